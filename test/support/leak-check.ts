// Leak check (a vitest setup file, in every test file): once a file's own afterAll hooks have
// run, nothing it opened may still be open — no socket (a pg pool or an ioredis connection not
// closed, a BullMQ worker or queue not closed), no server, no child process, no timer that keeps
// the process alive, no interval at all. Otherwise the file fails, naming each leftover: the
// socket's peer (Postgres, Redis, or a port), the child's command line, the timer's creation
// stack. graphile-worker's release check is the model: a leak found by the test that caused it,
// not by a CI run that hangs at exit or a pool that runs out of connections an hour later.
import { afterAll, beforeAll, expect } from 'vitest';

interface TrackedTimer {
  timer: NodeJS.Timeout;
  repeat: boolean;
  ms: number | undefined;
  created: { stack?: string };
}

interface TimerTracking {
  timers: Set<TrackedTimer>;
  added: number;
}

const TRACKING = Symbol.for('prewarm.leak-check.timers');
const globals = globalThis as typeof globalThis & { [TRACKING]?: TimerTracking };

/**
 * Wraps setTimeout and setInterval (once per process) to remember where each timer was created.
 * Vitest's own timers are unaffected: it keeps references to the originals from before setup
 * files run.
 */
function trackTimers(): TimerTracking {
  const existing = globals[TRACKING];
  if (existing) return existing;
  const tracking: TimerTracking = { timers: new Set(), added: 0 };
  globals[TRACKING] = tracking;
  const wrap = <F extends typeof setTimeout | typeof setInterval>(original: F, repeat: boolean): F => {
    const wrapped = function (this: unknown, ...args: Parameters<F>) {
      const timer = (original as (...a: unknown[]) => NodeJS.Timeout).apply(this, args);
      const created: { stack?: string } = {};
      Error.captureStackTrace(created, wrapped);
      tracking.timers.add({ timer, repeat, ms: typeof args[1] === 'number' ? args[1] : undefined, created });
      // Forget fired and cleared timers now and then, so the set stays small.
      if (++tracking.added % 5_000 === 0) for (const entry of tracking.timers) if (isDone(entry.timer)) tracking.timers.delete(entry);
      return timer;
    };
    // Keep util.promisify.custom and the rest of the original's properties.
    Object.defineProperties(wrapped, Object.getOwnPropertyDescriptors(original));
    return wrapped as unknown as F;
  };
  globalThis.setTimeout = wrap(globalThis.setTimeout, false);
  globalThis.setInterval = wrap(globalThis.setInterval, true);
  return tracking;
}

/** Fired (a timeout) or cleared. */
function isDone(timer: NodeJS.Timeout): boolean {
  return (timer as unknown as { _destroyed?: boolean })._destroyed === true;
}

/** Handles (sockets, servers, child processes, pipes) that keep the event loop alive. */
function refedHandles(): object[] {
  const handles = (process as unknown as { _getActiveHandles(): object[] })._getActiveHandles();
  return handles.filter((handle) => {
    if (handle === process.stdout || handle === process.stderr || handle === process.stdin) return false;
    const hasRef = (handle as { hasRef?: () => boolean }).hasRef;
    return typeof hasRef !== 'function' || hasRef.call(handle);
  });
}

const KNOWN_PORTS: Record<number, string> = { 5432: 'Postgres', 6379: 'Redis' };

function describeHandle(handle: object): string {
  const { constructor } = handle;
  if ('remotePort' in handle || 'localPort' in handle) {
    const socket = handle as { remoteAddress?: string; remotePort?: number; localPort?: number; connecting?: boolean };
    if (socket.remotePort === undefined) return `a socket (${constructor.name}, not connected${socket.connecting ? ', connecting' : ''})`;
    const known = KNOWN_PORTS[socket.remotePort];
    return `a socket to ${socket.remoteAddress}:${socket.remotePort}${known ? ` (${known}: a pool, client or connection not closed)` : ''}`;
  }
  if ('spawnargs' in handle) {
    const child = handle as { pid?: number; spawnargs: string[] };
    return `child process ${child.pid}: ${child.spawnargs.join(' ').slice(0, 200)}`;
  }
  if ('listening' in handle && 'address' in handle) {
    const address = (handle as { address(): unknown }).address();
    return `a server listening on ${JSON.stringify(address)}`;
  }
  return `a ${constructor.name} handle`;
}

function describeTimer(entry: TrackedTimer): string {
  const frames = (entry.created.stack ?? '')
    .split('\n')
    .slice(1)
    .map((line) => line.trim())
    .filter((line) => !line.includes('node:internal'))
    .slice(0, 6);
  const kind = entry.repeat ? 'setInterval' : 'setTimeout';
  return `${kind}(…, ${entry.ms ?? '?'} ms)${entry.timer.hasRef() ? '' : ' (unref)'} created\n      ${frames.join('\n      ')}`;
}

const tracking = trackTimers();
let baselineHandles = new Set<object>();
let baselineTimers = new Set<TrackedTimer>();

/** What the current test file opened and has not closed yet, described (empty when nothing). */
export function openResources(): string[] {
  return leftovers();
}

function leftovers(): string[] {
  const handles = refedHandles().filter((handle) => !baselineHandles.has(handle));
  // A pending timeout that keeps the process alive, or any interval: an interval left running
  // is a component left running, unref'd or not.
  const timers = [...tracking.timers].filter((entry) => !baselineTimers.has(entry) && !isDone(entry.timer) && (entry.repeat || entry.timer.hasRef()));
  return [...handles.map(describeHandle), ...timers.map(describeTimer)];
}

beforeAll(() => {
  baselineHandles = new Set(refedHandles());
  baselineTimers = new Set([...tracking.timers].filter((entry) => !isDone(entry.timer)));
});

// Registered before the test file's own hooks, so it runs after them (vitest runs after-hooks in
// reverse order). Sockets close a moment after quit()/end() resolve: allow a grace period.
afterAll(async () => {
  const giveUpAt = Date.now() + 5_000;
  let left = leftovers();
  while (left.length > 0 && Date.now() < giveUpAt) {
    // A tracked timer, but done by the time leftovers() looks again.
    await new Promise((resolve) => setTimeout(resolve, 100));
    left = leftovers();
  }
  if (left.length > 0) {
    const file = expect.getState().testPath ?? 'this test file';
    throw new Error(`leak check: ${file} left ${left.length} resource(s) open after its tests (close them in afterAll/afterEach, or fix the code that does not close them):\n  - ${left.join('\n  - ')}`);
  }
}, 15_000);
