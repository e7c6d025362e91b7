import type { Clock } from '../clock.ts';
import { isPrewarmError } from '../errors.ts';
import { ADVISORY_LOCKS } from '../db/locks.ts';
import type { Pool } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { retrainMaxAgeMs, type ModelMonitor } from './quality-monitor.ts';
import { retrainIfDue } from './train.ts';

export interface RetrainScheduleOptions {
  pool: Pool;
  log: Logger;
  clock: Clock;
  windowMs: number;
  /** Retrain when the newest model is older than this. */
  maxAgeMs: number;
  /** How often to check. Default 10 minutes. */
  checkEveryMs?: number;
  /**
   * Live quality, shadow scoring and drift (src/propensity/quality-monitor.ts), checked first under
   * the same lock: on drift the model is retrained at once; a model trained while another served
   * becomes its challenger.
   */
  monitor?: ModelMonitor;
}

/**
 * The propensity model's scheduled retraining, run by the scheduler process: every check, the
 * replica that takes the advisory lock retrains if the newest model is older than `maxAgeMs`.
 * Returns a stop function that waits for a retraining in progress.
 */
export function startRetrainSchedule(options: RetrainScheduleOptions): () => Promise<void> {
  const { pool, log } = options;
  let running: Promise<void> | undefined;
  const check = async () => {
    const client = await pool.connect();
    try {
      const locked = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [ADVISORY_LOCKS.propensityRetrain]);
      if (!locked.rows[0]?.ok) return;
      try {
        const pass = await options.monitor?.check();
        const monitor = options.monitor;
        const trained = await retrainIfDue({
          pool,
          log,
          clock: options.clock,
          windowMs: options.windowMs,
          maxAgeMs: pass ? retrainMaxAgeMs(pass, options.maxAgeMs) : options.maxAgeMs,
          onSave: monitor && pass ? (db, stored) => monitor.trained(db, stored, pass.serving) : undefined,
        });
        if (trained) log.info({ version: trained.version, early: pass?.retrainNow ?? false }, 'propensity model retrained on schedule');
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [ADVISORY_LOCKS.propensityRetrain]);
      }
    } catch (error) {
      // No logins yet is a normal state of a new deployment, not an error.
      if (isPrewarmError(error, 'PREWARM_ERR_NO_MODEL')) log.debug({ err: error }, 'propensity retraining skipped');
      else log.error({ err: error }, 'scheduled propensity retraining failed');
    } finally {
      client.release();
    }
  };
  const tick = () => {
    running ??= check().finally(() => (running = undefined));
  };
  const timer = setInterval(tick, options.checkEveryMs ?? 600_000);
  timer.unref();
  tick();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
