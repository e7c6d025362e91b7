import type { Queryable, Sql } from '../db/pool.ts';

/**
 * Waste and compute-cost reports over the `recommendation_life` view (migrations/0002_planner.sql).
 *
 * A batch set is *wasted* when its life — until it expired or a newer set replaced it — ended
 * without a serve. The views judge "ended" at the database's now(); these queries take `asOf`
 * instead, so a replay on a virtual clock asks at its own instant. Holdout sets are counted apart
 * and never in the policy's waste.
 */

export interface ReportPeriod {
  /** The instant the report is judged at (lives ended at or before it). Pass clock.now(). */
  asOf: Date;
  /** Sets computed at or after this instant. */
  from?: Date;
  /** Sets computed before this instant. */
  to?: Date;
  window?: string;
}

export interface WasteTotals {
  /** Policy (non-holdout) batch sets computed in the period. */
  precomputes: number;
  /** Of those, sets whose life has ended by asOf. */
  ended: number;
  served: number;
  wasted: number;
  /** wasted / ended; null while no life has ended. */
  waste: number | null;
  holdoutPrecomputes: number;
  holdoutEnded: number;
  holdoutWasted: number;
  holdoutWaste: number | null;
  /** Milliseconds computing policy batch sets, wasted ones included. */
  batchComputeMs: number;
  wastedComputeMs: number;
  holdoutComputeMs: number;
  onDemandSets: number;
  onDemandComputeMs: number;
}

export interface RunWaste {
  runId: number;
  window: string;
  scheduledFor: Date;
  status: string;
  precomputes: number;
  ended: number;
  served: number;
  wasted: number;
  waste: number | null;
  computeMs: number;
  wastedComputeMs: number;
  holdoutPrecomputes: number;
  holdoutWasted: number;
}

export interface DayWaste {
  /** UTC day (YYYY-MM-DD) on which the lives ended. */
  day: string;
  window: string | null;
  ended: number;
  wasted: number;
  waste: number | null;
  wastedComputeMs: number;
  holdoutEnded: number;
  holdoutWasted: number;
}

export interface DayComputeCost {
  /** UTC day (YYYY-MM-DD) of computation. */
  day: string;
  batchSets: number;
  batchComputeMs: number;
  batchWastedComputeMs: number;
  holdoutComputeMs: number;
  onDemandSets: number;
  onDemandComputeMs: number;
  totalComputeMs: number;
}

// The life-state of each set as of $1: the view's `ended`/`wasted` re-judged at a given instant.
const LIFE_AS_OF = `
  SELECT l.*, l.life_ended_at <= $1 AS ended_asof,
         l.source = 'batch' AND l.life_ended_at <= $1 AND NOT l.served AS wasted_asof
    FROM recommendation_life l
   WHERE ($2::timestamptz IS NULL OR l.computed_at >= $2)
     AND ($3::timestamptz IS NULL OR l.computed_at < $3)
     AND ($4::text IS NULL OR l.window_name = $4 OR l.source = 'on_demand')`;

function periodValues(period: ReportPeriod): unknown[] {
  return [period.asOf.toISOString(), period.from?.toISOString() ?? null, period.to?.toISOString() ?? null, period.window ?? null];
}

export const wasteSql = {
  totals(period: ReportPeriod): Sql {
    return {
      text: `WITH life AS (${LIFE_AS_OF})
             SELECT count(*) FILTER (WHERE source = 'batch' AND NOT holdout)::int AS precomputes,
                    count(*) FILTER (WHERE source = 'batch' AND NOT holdout AND ended_asof)::int AS ended,
                    count(*) FILTER (WHERE source = 'batch' AND NOT holdout AND served)::int AS served,
                    count(*) FILTER (WHERE source = 'batch' AND NOT holdout AND wasted_asof)::int AS wasted,
                    count(*) FILTER (WHERE source = 'batch' AND holdout)::int AS holdout_precomputes,
                    count(*) FILTER (WHERE source = 'batch' AND holdout AND ended_asof)::int AS holdout_ended,
                    count(*) FILTER (WHERE source = 'batch' AND holdout AND wasted_asof)::int AS holdout_wasted,
                    coalesce(sum(compute_ms) FILTER (WHERE source = 'batch' AND NOT holdout), 0)::float8 AS batch_compute_ms,
                    coalesce(sum(compute_ms) FILTER (WHERE source = 'batch' AND NOT holdout AND wasted_asof), 0)::float8 AS wasted_compute_ms,
                    coalesce(sum(compute_ms) FILTER (WHERE source = 'batch' AND holdout), 0)::float8 AS holdout_compute_ms,
                    count(*) FILTER (WHERE source = 'on_demand')::int AS on_demand_sets,
                    coalesce(sum(compute_ms) FILTER (WHERE source = 'on_demand'), 0)::float8 AS on_demand_compute_ms
               FROM life`,
      values: periodValues(period),
    };
  },
  byRun(period: ReportPeriod, limit: number): Sql {
    return {
      text: `WITH life AS (${LIFE_AS_OF})
             SELECT b.id AS run_id, b.window_name, b.scheduled_for, b.status,
                    count(l.id) FILTER (WHERE NOT l.holdout)::int AS precomputes,
                    count(l.id) FILTER (WHERE NOT l.holdout AND l.ended_asof)::int AS ended,
                    count(l.id) FILTER (WHERE NOT l.holdout AND l.served)::int AS served,
                    count(l.id) FILTER (WHERE NOT l.holdout AND l.wasted_asof)::int AS wasted,
                    coalesce(sum(l.compute_ms) FILTER (WHERE NOT l.holdout), 0)::float8 AS compute_ms,
                    coalesce(sum(l.compute_ms) FILTER (WHERE NOT l.holdout AND l.wasted_asof), 0)::float8 AS wasted_compute_ms,
                    count(l.id) FILTER (WHERE l.holdout)::int AS holdout_precomputes,
                    count(l.id) FILTER (WHERE l.holdout AND l.wasted_asof)::int AS holdout_wasted
               FROM batch_runs b
               JOIN life l ON l.run_id = b.id AND l.source = 'batch'
              GROUP BY b.id
              ORDER BY b.scheduled_for DESC, b.id DESC
              LIMIT $5`,
      values: [...periodValues(period), limit],
    };
  },
  byDay(period: ReportPeriod): Sql {
    return {
      text: `WITH life AS (${LIFE_AS_OF})
             SELECT to_char((life_ended_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS day, window_name,
                    count(*) FILTER (WHERE NOT holdout)::int AS ended,
                    count(*) FILTER (WHERE NOT holdout AND wasted_asof)::int AS wasted,
                    coalesce(sum(compute_ms) FILTER (WHERE NOT holdout AND wasted_asof), 0)::float8 AS wasted_compute_ms,
                    count(*) FILTER (WHERE holdout)::int AS holdout_ended,
                    count(*) FILTER (WHERE holdout AND wasted_asof)::int AS holdout_wasted
               FROM life
              WHERE source = 'batch' AND ended_asof
              GROUP BY 1, 2
              ORDER BY 1, 2`,
      values: periodValues(period),
    };
  },
  computeCostByDay(period: ReportPeriod): Sql {
    return {
      text: `WITH life AS (${LIFE_AS_OF})
             SELECT to_char((computed_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS day,
                    count(*) FILTER (WHERE source = 'batch')::int AS batch_sets,
                    coalesce(sum(compute_ms) FILTER (WHERE source = 'batch'), 0)::float8 AS batch_compute_ms,
                    coalesce(sum(compute_ms) FILTER (WHERE source = 'batch' AND wasted_asof), 0)::float8 AS batch_wasted_compute_ms,
                    coalesce(sum(compute_ms) FILTER (WHERE source = 'batch' AND holdout), 0)::float8 AS holdout_compute_ms,
                    count(*) FILTER (WHERE source = 'on_demand')::int AS on_demand_sets,
                    coalesce(sum(compute_ms) FILTER (WHERE source = 'on_demand'), 0)::float8 AS on_demand_compute_ms,
                    coalesce(sum(compute_ms), 0)::float8 AS total_compute_ms
               FROM life
              GROUP BY 1
              ORDER BY 1`,
      values: periodValues(period),
    };
  },
};

const rate = (part: number, whole: number): number | null => (whole > 0 ? part / whole : null);

export interface WasteReport {
  /** Everything in the period at once (the replay's figures). */
  totals(period: ReportPeriod): Promise<WasteTotals>;
  /** Per run, newest first (runs with at least one set). */
  byRun(period: ReportPeriod, limit?: number): Promise<RunWaste[]>;
  /** Per UTC day of life end and window. */
  byDay(period: ReportPeriod): Promise<DayWaste[]>;
  /** Per UTC day of computation: batch (wasted included) and on-demand milliseconds. */
  computeCostByDay(period: ReportPeriod): Promise<DayComputeCost[]>;
}

export function createWasteReport({ pool }: { pool: Queryable }): WasteReport {
  return {
    async totals(period) {
      const row = (await pool.query(wasteSql.totals(period))).rows[0];
      return {
        precomputes: row.precomputes,
        ended: row.ended,
        served: row.served,
        wasted: row.wasted,
        waste: rate(row.wasted, row.ended),
        holdoutPrecomputes: row.holdout_precomputes,
        holdoutEnded: row.holdout_ended,
        holdoutWasted: row.holdout_wasted,
        holdoutWaste: rate(row.holdout_wasted, row.holdout_ended),
        batchComputeMs: row.batch_compute_ms,
        wastedComputeMs: row.wasted_compute_ms,
        holdoutComputeMs: row.holdout_compute_ms,
        onDemandSets: row.on_demand_sets,
        onDemandComputeMs: row.on_demand_compute_ms,
      };
    },
    async byRun(period, limit = 100) {
      const result = await pool.query(wasteSql.byRun(period, limit));
      return result.rows.map((row) => ({
        runId: row.run_id,
        window: row.window_name,
        scheduledFor: row.scheduled_for,
        status: row.status,
        precomputes: row.precomputes,
        ended: row.ended,
        served: row.served,
        wasted: row.wasted,
        waste: rate(row.wasted, row.ended),
        computeMs: row.compute_ms,
        wastedComputeMs: row.wasted_compute_ms,
        holdoutPrecomputes: row.holdout_precomputes,
        holdoutWasted: row.holdout_wasted,
      }));
    },
    async byDay(period) {
      const result = await pool.query(wasteSql.byDay(period));
      return result.rows.map((row) => ({
        day: row.day,
        window: row.window_name,
        ended: row.ended,
        wasted: row.wasted,
        waste: rate(row.wasted, row.ended),
        wastedComputeMs: row.wasted_compute_ms,
        holdoutEnded: row.holdout_ended,
        holdoutWasted: row.holdout_wasted,
      }));
    },
    async computeCostByDay(period) {
      const result = await pool.query(wasteSql.computeCostByDay(period));
      return result.rows.map((row) => ({
        day: row.day,
        batchSets: row.batch_sets,
        batchComputeMs: row.batch_compute_ms,
        batchWastedComputeMs: row.batch_wasted_compute_ms,
        holdoutComputeMs: row.holdout_compute_ms,
        onDemandSets: row.on_demand_sets,
        onDemandComputeMs: row.on_demand_compute_ms,
        totalComputeMs: row.total_compute_ms,
      }));
    },
  };
}
