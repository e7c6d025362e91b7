// What V8's collector did in a server process during one load: its `--trace-gc-nvp` lines (one
// per collection, name=value pairs) summed. The hit path's p99 follows the young-generation
// pauses, and those follow what survives them (README "Benchmarks", the serving Redis client).

/** The node flag that makes a process print the lines `summarizeGc` reads. */
export const GC_TRACE_FLAG = '--trace-gc-nvp';

export interface GcSummary {
  /** Young-generation collections (scavenges). */
  scavenges: number;
  scavengeMeanMs: number;
  scavengeMaxMs: number;
  /** Bytes each scavenge moved into the old generation, on average (KB). */
  promotedKbPerScavenge: number;
  /** Bytes each scavenge kept in the young generation or promoted, on average (KB). */
  survivedKbPerScavenge: number;
  /** Full (mark-compact) collections and their mean pause. */
  markCompacts: number;
  markCompactMeanMs: number;
}

const V8_NVP_LINE = /^\[\d+:0x[0-9a-f]+\]\s+[\d.]+ ms: pause=/;

function fields(line: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const pair of line.split(/\s+/)) {
    const at = pair.indexOf('=');
    if (at > 0) map.set(pair.slice(0, at), pair.slice(at + 1));
  }
  return map;
}

/** Sums the `--trace-gc-nvp` lines in `output` (other lines are ignored). */
export function summarizeGc(output: string): GcSummary {
  let scavenges = 0;
  let scavengeMs = 0;
  let scavengeMaxMs = 0;
  let promoted = 0;
  let survived = 0;
  let markCompacts = 0;
  let markCompactMs = 0;
  for (const line of output.split('\n')) {
    // V8's own lines only ("[pid:isolate]  52 ms: pause=…"), not a log line that mentions gc=.
    if (!V8_NVP_LINE.test(line)) continue;
    const f = fields(line);
    const pause = Number(f.get('pause') ?? 0);
    if (f.get('gc') === 's') {
      scavenges++;
      scavengeMs += pause;
      scavengeMaxMs = Math.max(scavengeMaxMs, pause);
      promoted += Number(f.get('promoted') ?? 0);
      survived += Number(f.get('new_space_survived') ?? 0);
    } else if (f.get('gc') === 'mc') {
      markCompacts++;
      markCompactMs += pause;
    }
  }
  const per = (total: number, n: number, unit = 1) => (n === 0 ? 0 : Number((total / n / unit).toFixed(2)));
  return {
    scavenges,
    scavengeMeanMs: per(scavengeMs, scavenges),
    scavengeMaxMs: Number(scavengeMaxMs.toFixed(2)),
    promotedKbPerScavenge: per(promoted, scavenges, 1024),
    survivedKbPerScavenge: per(survived, scavenges, 1024),
    markCompacts,
    markCompactMeanMs: per(markCompactMs, markCompacts),
  };
}
