import type { Clock } from '../clock.ts';
import { toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { latestOccurrence } from './cron.ts';
import type { Planner } from './planner.ts';
import type { RunStore } from './runs.ts';
import type { Window, WindowStore } from './windows.ts';

export type TickOutcome =
  | { window: string; action: 'planned'; occurrence: Date; runId: number; selected: number; holdout: number; chunks: number }
  /** Another replica (or an earlier tick) holds the claim: nothing to do. */
  | { window: string; action: 'claimed'; occurrence: Date }
  /** The latest occurrence's horizon is over: it is not run late (the missed-occurrence rule). */
  | { window: string; action: 'outside-horizon'; occurrence: Date }
  | { window: string; action: 'no-occurrence' }
  | { window: string; action: 'error'; occurrence?: Date; error: Error };

export interface Scheduler {
  /**
   * For every enabled window: finds the latest occurrence at or before `now` (in the window's time
   * zone) and, if `now` is still inside its horizon, claims and plans it — once, however many
   * replicas tick. Windows are re-read at every tick. One window's failure does not stop the others.
   */
  tick(now?: Date): Promise<TickOutcome[]>;
  /** The same for one window (a cron task firing). */
  tickWindow(name: string, now?: Date): Promise<TickOutcome>;
  /**
   * Enqueues the chunks of timed runs whose compute time has come (timing.ts). `tick` and
   * `tickWindow` do it after planning; returns the jobs added (0 on failure, which is logged: the
   * next tick retries, the chunks stay recorded as held).
   */
  dispatch(now?: Date): Promise<number>;
}

export interface SchedulerDeps {
  windows: WindowStore;
  planner: Planner;
  runs: RunStore;
  clock: Clock;
  log: Logger;
}

/**
 * The scheduler's core, free of timers: node-cron calls it in real time (cron-driver.ts), a replay
 * calls `tick(virtualNow)` on its own clock.
 *
 * Missed occurrences. Only the latest occurrence of a window is ever considered, and it is run if
 * it was never claimed and `now < occurrence + horizon`. So a scheduler that starts (or a window
 * that is created, re-enabled or rescheduled) inside an occurrence's horizon runs that occurrence
 * at once, late; older occurrences, and one whose horizon is over, are skipped with a warning —
 * precomputing for a period that has ended would only produce waste.
 */
export function createScheduler({ windows, planner, runs, clock, log }: SchedulerDeps): Scheduler {
  const warned = new Set<string>();
  // Ticks of one process run one after another; replicas are kept apart by the claim.
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(work: () => Promise<T>): Promise<T> => {
    const next = chain.then(work, work);
    chain = next.catch(() => undefined);
    return next;
  };

  async function tickOne(window: Window, now: Date): Promise<TickOutcome> {
    let occurrence: Date | undefined;
    try {
      occurrence = latestOccurrence(window.cron, window.timezone, now);
      if (!occurrence) return { window: window.name, action: 'no-occurrence' };
      if (now.getTime() >= occurrence.getTime() + window.horizonMs) {
        const key = `${window.name}@${occurrence.toISOString()}`;
        if (!warned.has(key)) {
          warned.add(key);
          if (!(await runs.exists(window.name, occurrence))) {
            log.warn({ window: window.name, occurrence }, 'occurrence missed while no scheduler ran; its horizon is over, so it is skipped');
          }
        }
        return { window: window.name, action: 'outside-horizon', occurrence };
      }
      const planned = await planner.planRun(window, occurrence);
      if (!planned) return { window: window.name, action: 'claimed', occurrence };
      return {
        window: window.name,
        action: 'planned',
        occurrence,
        runId: planned.run.id,
        selected: planned.run.selected,
        holdout: planned.run.holdout,
        chunks: planned.run.chunksTotal,
      };
    } catch (thrown) {
      const error = toError(thrown);
      log.error({ err: error, window: window.name, occurrence }, 'scheduler tick failed for a window');
      return occurrence ? { window: window.name, action: 'error', occurrence, error } : { window: window.name, action: 'error', error };
    }
  }

  async function dispatchDue(at: Date): Promise<number> {
    if (!planner.dispatch) return 0;
    try {
      return await planner.dispatch(at);
    } catch (thrown) {
      log.error({ err: toError(thrown), at }, 'dispatching due timed chunks failed; the next tick retries');
      return 0;
    }
  }

  return {
    tick(now) {
      return serial(async () => {
        const at = now ?? clock.now();
        const enabled = await windows.listEnabled();
        const outcomes: TickOutcome[] = [];
        for (const window of enabled) outcomes.push(await tickOne(window, at));
        // Timed runs' chunks whose compute time has come, of every window (even one disabled since).
        await dispatchDue(at);
        return outcomes;
      });
    },
    tickWindow(name, now) {
      return serial(async () => {
        const at = now ?? clock.now();
        const window = await windows.get(name);
        if (!window || !window.enabled) return { window: name, action: 'no-occurrence' } as const;
        const outcome = await tickOne(window, at);
        await dispatchDue(at);
        return outcome;
      });
    },
    dispatch(now) {
      return serial(() => dispatchDue(now ?? clock.now()));
    },
  };
}
