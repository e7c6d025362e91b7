import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import autocannon from 'autocannon';

export interface LoadResult {
  name: string;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: number;
  non2xx: number;
}

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  /** Everything the process has printed so far (stdout and stderr). */
  output(): string;
  stop(): Promise<void>;
}

/** Starts a server process and resolves with its URL once it prints that it listens. */
export async function startServerProcess(command: string[], env: Record<string, string>): Promise<ServerProcess> {
  const child = spawn(command[0] as string, command.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${output}`)), 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /(?:listening|"url":")\s*(http:\/\/[^\s"]+)/.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${output}`)));
  });
  return {
    url,
    child,
    output: () => output,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** Drives `url` with autocannon (c connections for `seconds`), each request for a user drawn from `userIds`. */
export async function load(
  name: string,
  baseUrl: string,
  userIds: readonly string[],
  options: { connections?: number; seconds?: number; token?: string; rate?: number } = {},
): Promise<LoadResult> {
  let next = 0;
  const result = await autocannon({
    url: baseUrl,
    connections: options.connections ?? 50,
    duration: options.seconds ?? 10,
    // A fixed request rate instead of as fast as the server answers: the CPU each request costs,
    // without the queueing of a saturated machine.
    ...(options.rate === undefined ? {} : { overallRate: options.rate }),
    headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
    requests: [
      {
        method: 'GET',
        setupRequest: (request) => {
          const userId = userIds[next++ % userIds.length] as string;
          return { ...request, path: `/v1/users/${encodeURIComponent(userId)}/recommendations?limit=20` };
        },
      },
    ],
  });
  return {
    name,
    requestsPerSecond: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    requests: result.requests.total,
    errors: result.errors,
    non2xx: result.non2xx,
  };
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomUUID().replaceAll('-', '').slice(0, 10)}`;
}

export function printTable(rows: Record<string, string | number>[]): void {
  const columns = Object.keys(rows[0] ?? {});
  const widths = columns.map((column) => Math.max(column.length, ...rows.map((row) => String(row[column]).length)));
  const line = (values: string[]) => values.map((value, i) => value.padStart(widths[i] as number)).join('  ');
  process.stdout.write(`${line(columns)}\n`);
  for (const row of rows) process.stdout.write(`${line(columns.map((column) => String(row[column])))}\n`);
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

/**
 * Prints the self time per function (and per file or package) of every `.cpuprofile` in `dir`
 * (`node --cpu-prof`): where a server's own thread spends its time, GC and idle included.
 */
export function printProfile(dir: string, top = 30): void {
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))) {
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
    const nodes = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
    const byFunction = new Map<string, number>();
    const byFile = new Map<string, number>();
    let total = 0;
    profile.samples.forEach((id, i) => {
      const frame = nodes.get(id);
      const micros = profile.timeDeltas[i] ?? 0;
      total += micros;
      const where = (frame?.url ?? '').replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/(src|scripts)\//, '$1/');
      const name = `${frame?.functionName || '(anonymous)'} ${where}:${frame?.lineNumber ?? 0}`;
      byFunction.set(name, (byFunction.get(name) ?? 0) + micros);
      const module = where.startsWith('src/') || where.startsWith('scripts/') ? where : (where.match(/^(@[^/]+\/[^/]+|[^/]+)/)?.[1] ?? where);
      byFile.set(module, (byFile.get(module) ?? 0) + micros);
    });
    const share = (micros: number) => `${((100 * micros) / total).toFixed(1).padStart(5)}%`;
    process.stdout.write(`\nprofile ${file}: ${(total / 1e6).toFixed(1)} s sampled\n`);
    for (const [name, micros] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${share(micros)}  ${name}\n`);
    process.stdout.write('by file or package:\n');
    for (const [name, micros] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${share(micros)}  ${name || '(native)'}\n`);
  }
}

/** CPU time a process has used so far, in ms (Linux: /proc/PID/schedstat), or NaN elsewhere. */
export function processCpuMs(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return Number.NaN;
  }
}

/**
 * The Postgres backends serving `pid`'s connections to port 5432 (their peer ports are its local
 * ports; `ss -tnp`, Linux, as root or as Postgres's user), so that a bench counts the database
 * CPU spent for one server and not the other work on a shared machine. Empty when unknown.
 */
export function postgresBackendsOf(pid: number, pgPort = 5432): number[] {
  let lines: string[];
  try {
    lines = execFileSync('ss', ['-tnpH'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().split('\n');
  } catch {
    return [];
  }
  const sockets = lines.map((line) => {
    const [, , , local = '', peer = '', users = ''] = line.trim().split(/\s+/);
    return { local, peer, pid: Number(/pid=(\d+)/.exec(users)?.[1]) };
  });
  const ours = new Set(sockets.filter((s) => s.pid === pid && s.peer.endsWith(`:${pgPort}`)).map((s) => s.local.slice(s.local.lastIndexOf(':') + 1)));
  return sockets.filter((s) => s.local.endsWith(`:${pgPort}`) && ours.has(s.peer.slice(s.peer.lastIndexOf(':') + 1))).map((s) => s.pid);
}

/** CPU used by named processes between `start()` and `stop()`, in ms each (NaN when unknown). */
export function cpuMeter(processes: () => Record<string, number[]>) {
  const before = new Map<number, number>();
  let selfBefore = process.cpuUsage();
  return {
    start() {
      before.clear();
      for (const pids of Object.values(processes())) for (const pid of pids) before.set(pid, processCpuMs(pid));
      selfBefore = process.cpuUsage();
    },
    stop(): Record<string, number> {
      const self = process.cpuUsage(selfBefore);
      const used: Record<string, number> = { 'load generator': (self.user + self.system) / 1000 };
      for (const [name, pids] of Object.entries(processes())) {
        let sum = pids.length === 0 ? Number.NaN : 0;
        for (const pid of pids) {
          const now = processCpuMs(pid);
          if (!Number.isNaN(now)) sum += now - (before.get(pid) ?? 0);
        }
        used[name] = sum;
      }
      return used;
    },
  };
}
