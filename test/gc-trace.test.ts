// scripts/bench/gc-trace.ts: the serve bench's `--gc` summary of `node --trace-gc-nvp` output,
// checked against lines a real process printed (abridged) and against a real child process.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { GC_TRACE_FLAG, summarizeGc } from '../scripts/bench/gc-trace.ts';

const printed = [
  'listening http://127.0.0.1:40105',
  '[23159:0x6987c70]       52 ms: pause=0.9 mutator=45.9 gc=s reduce_memory=0 fast_promote=0.00 allocated=1048576 promoted=524288 new_space_survived=786432 promotion_rate=70.1%',
  '[23159:0x6987c70]       95 ms: pause=3.1 mutator=40.2 gc=s reduce_memory=0 fast_promote=0.00 allocated=1048576 promoted=0 new_space_survived=262144 promotion_rate=0.0%',
  '[23159:0x7f2c1c000f00]      345 ms: pause=6.8 mutator=30.0 gc=mc reduce_memory=0 time_to_safepoint=0.00',
  '{"level":30,"msg":"a log line that says gc=s in passing is still not a collection"}',
].join('\n');

describe('summarizeGc', () => {
  it('sums scavenges and full collections from --trace-gc-nvp lines', () => {
    expect(summarizeGc(printed)).toEqual({
      scavenges: 2,
      scavengeMeanMs: 2,
      scavengeMaxMs: 3.1,
      promotedKbPerScavenge: 256,
      survivedKbPerScavenge: 512,
      markCompacts: 1,
      markCompactMeanMs: 6.8,
    });
  });

  it('reports zeros when nothing was collected', () => {
    expect(summarizeGc('listening http://127.0.0.1:1\n')).toMatchObject({ scavenges: 0, scavengeMeanMs: 0, promotedKbPerScavenge: 0, markCompacts: 0 });
  });

  it('reads what this Node prints under the flag', () => {
    const output = execFileSync(process.execPath, [GC_TRACE_FLAG, '-e', 'let keep = []; for (let i = 0; i < 2e5; i++) { keep.push({ i }); if (keep.length > 5e4) keep = []; }'], { encoding: 'utf8' });
    const summary = summarizeGc(output);
    expect(summary.scavenges).toBeGreaterThan(0);
    expect(summary.scavengeMeanMs).toBeGreaterThan(0);
    expect(summary.survivedKbPerScavenge).toBeGreaterThan(0);
  });
});
