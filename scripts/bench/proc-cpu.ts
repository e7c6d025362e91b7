// CPU time from Linux's /proc, for benchmarks on a shared host: a loaded machine's clock measures
// the other tenants too, the CPU time a process (and the Postgres backends serving it) used does
// much less so. Everything here answers "unknown" (undefined, an empty map) where /proc is absent.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { Queryable } from '../../src/db/pool.ts';

/** A process's CPU time (user + system, all threads) from /proc; undefined where there is none. */
export function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    // Fields after the command (which may hold spaces): state is the 3rd, utime and stime the 14th and 15th.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/**
 * CPU time of the Postgres backends serving `pids`' connections (Linux, Postgres on this host):
 * the client's sockets (/proc/<pid>/fd) → their local ports (/proc/<pid>/net/tcp*) → the backends
 * with those client ports (pg_stat_activity) → their /proc stat. Keyed by backend pid, so that a
 * connection opened or closed between two readings can be told apart. Empty where there is none.
 */
export async function backendsCpuMs(pool: Queryable, postgresPort: number, pids: (number | undefined)[]): Promise<Map<number, number>> {
  const ports: number[] = [];
  try {
    for (const pid of pids) {
      if (pid === undefined) continue;
      const inodes = new Set<string>();
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const target = (() => {
          try {
            return readlinkSync(`/proc/${pid}/fd/${fd}`);
          } catch {
            return '';
          }
        })();
        const socket = /^socket:\[(\d+)\]$/.exec(target);
        if (socket) inodes.add(socket[1]!);
      }
      for (const table of ['tcp', 'tcp6']) {
        for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
          const columns = line.trim().split(/\s+/);
          if (columns.length < 10 || !inodes.has(columns[9]!)) continue;
          if (parseInt(columns[2]!.split(':')[1]!, 16) !== postgresPort) continue;
          ports.push(parseInt(columns[1]!.split(':')[1]!, 16));
        }
      }
    }
  } catch {
    return new Map();
  }
  if (ports.length === 0) return new Map();
  const backends = await pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[])', [ports]);
  const cpu = new Map<number, number>();
  for (const { pid } of backends.rows) {
    const ms = processCpuMs(pid);
    if (ms !== undefined) cpu.set(pid, ms);
  }
  return cpu;
}

/** CPU time between two readings of backendsCpuMs; a backend first seen in the second counts whole. */
export function backendsCpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let ms = 0;
  for (const [pid, now] of after) ms += now - (before.get(pid) ?? 0);
  return Math.round(ms);
}

// USER_HZ: 100 on every Linux architecture Node runs on.
const CLOCK_TICKS = 100;
