import type { Clock } from '../clock.ts';
import type { Pool, Queryable, Sql } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { decideChallenger, markChallenger, shadowScore } from './champion.ts';
import { latestModelVersion, type StoredPropensityModel } from './model-store.ts';
import { recordModelQuality } from './quality.ts';

export interface ModelMonitorOptions {
  pool: Pool;
  log: Logger;
  clock: Clock;
  /** PREWARM_PROPENSITY_DRIFT_MARGIN. */
  driftMargin: number;
  /** PREWARM_PROPENSITY_CHALLENGER: a model trained while another serves starts in shadow. Default true. */
  challenger?: boolean;
}

export interface MonitorPass {
  /** Runs whose live quality was recorded in this pass. */
  evaluated: number;
  /** Runs the waiting challenger scored in shadow. */
  shadowed: number;
  decision?: { version: string; role: 'champion' | 'rejected' };
  /** The serving model drifted on its latest evaluated run and no model was trained since: retrain now. */
  retrainNow: boolean;
  /** The model serving at the end of the pass (before any retraining that follows it). */
  serving: string | undefined;
  /** Age of the newest model of any role (a challenger waiting included); undefined: none. */
  newestModelAgeMs: number | undefined;
}

/**
 * The age past which the retraining that follows a pass trains (retrainIfDue's maxAgeMs, which it
 * compares with the serving model): 0 on drift; never while a model of any role younger than
 * `maxAgeMs` exists (a challenger waiting for its decision, or just rejected), so that a serving
 * model kept in place does not make every check train another challenger.
 */
export function retrainMaxAgeMs(pass: MonitorPass, maxAgeMs: number): number {
  if (pass.retrainNow) return 0;
  return pass.newestModelAgeMs !== undefined && pass.newestModelAgeMs < maxAgeMs ? Number.POSITIVE_INFINITY : maxAgeMs;
}

export interface ModelMonitor {
  /**
   * One pass: live quality of the runs that ended, shadow scores, a challenger's decision, drift.
   * Never throws: a failure is logged, and the retraining check that follows still runs.
   */
  check(): Promise<MonitorPass>;
  /**
   * While a retrained model is stored (in that transaction, `db`): it becomes the serving one's
   * challenger when one served before it.
   */
  trained(db: Queryable, model: StoredPropensityModel, servingBefore: string | undefined): Promise<void>;
}

export const monitorSql = {
  newestTrainedAt(): Sql {
    return { text: 'SELECT max(trained_at) AS at FROM propensity_models' };
  },
  /**
   * The serving model's latest evaluated run, if it drifted, and whether any model was trained
   * after that run's window ended (then the early retraining already happened).
   */
  driftOfServing(version: string): Sql {
    return {
      text: `SELECT q.run_id, q.drifted, b.expires_at,
                    EXISTS (SELECT 1 FROM propensity_models m WHERE m.trained_at >= b.expires_at) AS retrained_since
               FROM model_quality_runs q JOIN batch_runs b ON b.id = q.run_id
              WHERE q.model_version = $1
              ORDER BY b.expires_at DESC, q.run_id DESC LIMIT 1`,
      values: [version],
    };
  },
};

async function driftNeedsRetraining(pool: Queryable, log: Logger): Promise<boolean> {
  const serving = await latestModelVersion(pool);
  if (!serving) return false;
  const sql = monitorSql.driftOfServing(serving.version);
  const row = (await pool.query<{ run_id: string; drifted: boolean; expires_at: Date; retrained_since: boolean }>(sql.text, sql.values)).rows[0];
  if (!row?.drifted || row.retrained_since) return false;
  log.warn({ version: serving.version, runId: Number(row.run_id) }, 'propensity model drifted: retraining early');
  return true;
}

/**
 * The scheduler's model monitoring, run under the retraining lock at every retraining check
 * (src/propensity/retrain-schedule.ts): records live quality, lets the challenger score the new
 * runs in shadow and decides it, and asks for an early retraining on drift.
 */
export function createModelMonitor(options: ModelMonitorOptions): ModelMonitor {
  const { pool, log, clock } = options;
  return {
    async check() {
      const pass: MonitorPass = { evaluated: 0, shadowed: 0, retrainNow: false, serving: undefined, newestModelAgeMs: undefined };
      try {
        pass.evaluated = (await recordModelQuality({ pool, log, clock, driftMargin: options.driftMargin })).length;
        pass.shadowed = await shadowScore({ pool, log });
        const decided = await decideChallenger({ pool, log, clock });
        if (decided) pass.decision = { version: decided.version, role: decided.role };
        pass.retrainNow = await driftNeedsRetraining(pool, log);
      } catch (error) {
        log.error({ err: error }, 'propensity model monitoring failed');
      }
      try {
        pass.serving = (await latestModelVersion(pool))?.version;
        const newest = (await pool.query<{ at: Date | null }>(monitorSql.newestTrainedAt().text)).rows[0]?.at;
        if (newest) pass.newestModelAgeMs = clock.now().getTime() - newest.getTime();
      } catch (error) {
        log.error({ err: error }, 'reading the serving propensity model failed');
      }
      return pass;
    },
    async trained(db, model, servingBefore) {
      if (!(options.challenger ?? true) || servingBefore === undefined || servingBefore === model.version) return;
      await markChallenger(db, model.version, clock, log);
      log.info({ version: model.version, serving: servingBefore }, 'propensity model trained as a challenger: it scores in shadow until the outcomes decide');
    },
  };
}
