import nodeCron, { type ScheduledTask } from 'node-cron';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { Planner } from './planner.ts';
import type { Scheduler } from './scheduler.ts';
import type { WindowStore } from './windows.ts';

export interface CronDriverDeps {
  scheduler: Scheduler;
  windows: WindowStore;
  planner: Planner;
  clock: Clock;
  log: Logger;
  /**
   * How often windows are re-read (cron tasks created, changed, removed) and every window is
   * ticked as a safety net for a missed cron fire. Default 15 000 ms.
   */
  reloadIntervalMs?: number;
  /** How often running runs are swept for lost or failed chunks (Planner.sweep). Default 60 000 ms. */
  sweepIntervalMs?: number;
}

export interface CronDriver {
  /** Ticks every window once (the start-up rule for missed occurrences), then keeps ticking. */
  start(): Promise<void>;
  /** Names of the windows with a live cron task. */
  scheduled(): string[];
  /** Stops the timers and cron tasks and waits for a tick in progress. Idempotent. */
  close(): Promise<void>;
}

/**
 * Real-time driver of the scheduler: one node-cron task per enabled window, in the window's time
 * zone, calling Scheduler.tickWindow when it fires. Windows are reloaded periodically, so
 * `prewarm windows set/enable/disable/delete` takes effect without a restart.
 */
export function createCronDriver(deps: CronDriverDeps): CronDriver {
  const { scheduler, windows, planner, clock, log } = deps;
  const reloadIntervalMs = deps.reloadIntervalMs ?? 15_000;
  const sweepIntervalMs = deps.sweepIntervalMs ?? 60_000;
  const tasks = new Map<string, { signature: string; task: ScheduledTask }>();
  let timer: NodeJS.Timeout | undefined;
  let closing: Promise<void> | undefined;
  let inFlight: Promise<unknown> = Promise.resolve();
  let lastSweep = 0;

  // node-cron's own messages (missed executions when the event loop was blocked) go to pino.
  const cronLogger = {
    info: (message: string) => log.debug({ source: 'node-cron' }, message),
    warn: (message: string) => log.warn({ source: 'node-cron' }, message),
    error: (message: string | Error, err?: Error) => log.error({ source: 'node-cron', err: err ?? message }, String(message)),
    debug: (message: string | Error) => log.debug({ source: 'node-cron' }, String(message)),
  };

  const track = <T>(work: Promise<T>): Promise<T> => {
    inFlight = Promise.allSettled([inFlight, work]);
    return work;
  };

  function fire(name: string, scheduledAt: Date | undefined): void {
    if (closing) return;
    // node-cron may fire a hair early; never look for the occurrence before the one that fired.
    const now = clock.now();
    const at = scheduledAt && scheduledAt.getTime() > now.getTime() ? scheduledAt : now;
    void track(scheduler.tickWindow(name, at)).then(
      (outcome) => log.debug({ outcome }, 'cron tick'),
      (error) => log.error({ err: error, window: name }, 'cron tick failed'),
    );
  }

  async function stopTask(name: string): Promise<void> {
    const entry = tasks.get(name);
    if (!entry) return;
    tasks.delete(name);
    await entry.task.destroy();
  }

  async function reload(): Promise<void> {
    const enabled = await windows.listEnabled();
    const seen = new Set<string>();
    for (const window of enabled) {
      seen.add(window.name);
      const signature = `${window.cron}\u0000${window.timezone}`;
      const current = tasks.get(window.name);
      if (current?.signature === signature) continue;
      await stopTask(window.name);
      if (closing) return;
      const task = nodeCron.schedule(window.cron, (context) => fire(window.name, context.date), {
        timezone: window.timezone,
        name: `prewarm-window-${window.name}`,
        noOverlap: true,
        logger: cronLogger,
      });
      task.on('execution:failed', (context) => log.error({ err: context.execution?.error, window: window.name }, 'cron task failed'));
      tasks.set(window.name, { signature, task });
      log.info({ window: window.name, cron: window.cron, timezone: window.timezone, next: task.getNextRun() }, current ? 'window rescheduled' : 'window scheduled');
    }
    for (const name of [...tasks.keys()]) {
      if (!seen.has(name)) {
        await stopTask(name);
        log.info({ window: name }, 'window unscheduled (disabled or deleted)');
      }
    }
  }

  async function cycle(): Promise<void> {
    try {
      await reload();
      await scheduler.tick();
      if (clock.now().getTime() - lastSweep >= sweepIntervalMs) {
        lastSweep = clock.now().getTime();
        const swept = await planner.sweep();
        if (swept.requeued + swept.failed > 0) log.warn(swept, 'swept running runs');
      }
    } catch (error) {
      log.error({ err: error }, 'scheduler cycle failed; retrying at the next one');
    }
  }

  return {
    async start() {
      await track(cycle());
      if (closing) return;
      timer = setInterval(() => {
        if (!closing) void track(cycle());
      }, reloadIntervalMs);
    },
    scheduled: () => [...tasks.keys()].sort(),
    close() {
      closing ??= (async () => {
        if (timer) clearInterval(timer);
        // A cycle in progress may still be creating tasks: let it finish, then remove them all.
        await inFlight;
        for (const name of [...tasks.keys()]) await stopTask(name).catch((error) => log.warn({ err: error, window: name }, 'stopping a cron task failed'));
      })();
      return closing;
    },
  };
}
