import type { Queryable, Sql } from '../db/pool.ts';
import { createWasteReport, type ReportPeriod } from './waste.ts';

/**
 * The summary an operator or the replay prints, read from Postgres (the views of
 * migrations/0002 and 0004), never from in-memory counters.
 */
export interface PolicyReport {
  precomputes: number;
  wasted: number;
  /** wasted / precomputes whose life has ended; null before any has. */
  waste: number | null;
  /** Per user-window (docs/design.md): covered known active users / known active users. */
  coverage: number | null;
  /** Logins answered `precomputed` / all logins. */
  loginCoverage: number | null;
  logins: number;
  knownActiveUserWindows: number;
  stalenessP50Ms: number | null;
  stalenessP95Ms: number | null;
  /** On-demand computations (sets computed during a login). */
  onDemand: number;
  batchComputeMs: number;
  onDemandComputeMs: number;
  latencyP50Ms: Record<string, number>;
  latencyP99Ms: Record<string, number>;
  servesBySource: Record<string, number>;
  /** Logins served a set that missed interactions of its user (serves.missed_interactions > 0). */
  behindServes: number;
  /** behindServes / logins (fallback answers included); null when no serve was counted. */
  behindShare: number | null;
  /** Missed interactions per serve of a counted set (p50, p95); null when none was counted. */
  missedP50: number | null;
  missedP95: number | null;
  /**
   * On-demand sets computed while another set of the same user was still fresh: the refreshes of
   * behind sets (PREWARM_REFRESH_BEHIND=login), the price of serving up-to-date sets.
   */
  refreshes: number;
  refreshComputeMs: number;
}

export interface DailyPoint {
  day: string;
  logins: number;
  loginCoverage: number | null;
  coverage: number | null;
  waste: number | null;
  stalenessP50Ms: number | null;
  /** Logins of the day served a behind set / the day's logins (null: none counted). */
  behindShare?: number | null;
  /** Missed interactions per counted serve, p95. */
  missedP95?: number | null;
}

const sql = {
  coverage(period: ReportPeriod): Sql {
    return {
      text: `SELECT coalesce(sum(active_known), 0)::bigint AS active_known, coalesce(sum(covered), 0)::bigint AS covered
               FROM coverage_by_run
              WHERE ($1::timestamptz IS NULL OR scheduled_for >= $1) AND ($2::timestamptz IS NULL OR scheduled_for < $2)
                AND ($3::text IS NULL OR window_name = $3)`,
      values: [period.from ?? null, period.to ?? null, period.window ?? null],
    };
  },
  serves(period: ReportPeriod): Sql {
    return {
      text: `SELECT source, count(*)::bigint AS n,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99
               FROM serves
              WHERE ($1::timestamptz IS NULL OR at >= $1) AND ($2::timestamptz IS NULL OR at < $2)
              GROUP BY source`,
      values: [period.from ?? null, period.to ?? null],
    };
  },
  staleness(period: ReportPeriod): Sql {
    return {
      text: `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY staleness_ms) AS p50,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY staleness_ms) AS p95
               FROM serves
              WHERE staleness_ms IS NOT NULL
                AND ($1::timestamptz IS NULL OR at >= $1) AND ($2::timestamptz IS NULL OR at < $2)`,
      values: [period.from ?? null, period.to ?? null],
    };
  },
  missed(period: ReportPeriod): Sql {
    return {
      text: `SELECT count(*)::bigint AS counted, count(*) FILTER (WHERE missed_interactions > 0)::bigint AS behind,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY missed_interactions) AS p50,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY missed_interactions) AS p95
               FROM serves
              WHERE missed_interactions IS NOT NULL
                AND ($1::timestamptz IS NULL OR at >= $1) AND ($2::timestamptz IS NULL OR at < $2)`,
      values: [period.from ?? null, period.to ?? null],
    };
  },
  /** On-demand sets computed while an earlier set of the user was fresh (recommendations_user_idx). */
  refreshes(period: ReportPeriod): Sql {
    return {
      text: `SELECT count(*)::bigint AS n, coalesce(sum(o.compute_ms), 0)::float8 AS ms
               FROM recommendations o
              WHERE o.source = 'on_demand'
                AND ($1::timestamptz IS NULL OR o.computed_at >= $1) AND ($2::timestamptz IS NULL OR o.computed_at < $2)
                AND EXISTS (SELECT 1 FROM recommendations p
                             WHERE p.user_id = o.user_id AND p.computed_at < o.computed_at AND p.expires_at > o.computed_at)`,
      values: [period.from ?? null, period.to ?? null],
    };
  },
  daily(period: ReportPeriod): Sql {
    return {
      text: `SELECT d.day::text AS day, d.logins, d.login_coverage, c.coverage, w.waste_rate, s.p50,
                    m.behind::double precision / nullif(d.logins, 0) AS behind_share, m.p95 AS missed_p95
               FROM login_coverage_by_day d
               LEFT JOIN (SELECT day, sum(active_known) AS a, sum(covered) AS c,
                                 sum(covered)::double precision / nullif(sum(active_known), 0) AS coverage
                            FROM coverage_by_day GROUP BY day) c ON c.day = d.day
               LEFT JOIN (SELECT day, sum(wasted)::double precision / nullif(sum(ended), 0) AS waste_rate
                            FROM waste_by_day GROUP BY day) w ON w.day = d.day
               LEFT JOIN (SELECT (at AT TIME ZONE 'UTC')::date AS day,
                                 percentile_cont(0.5) WITHIN GROUP (ORDER BY staleness_ms) AS p50
                            FROM serves WHERE staleness_ms IS NOT NULL GROUP BY 1) s ON s.day = d.day
               LEFT JOIN (SELECT (at AT TIME ZONE 'UTC')::date AS day, count(*) FILTER (WHERE missed_interactions > 0) AS behind,
                                 percentile_cont(0.95) WITHIN GROUP (ORDER BY missed_interactions) AS p95
                            FROM serves WHERE missed_interactions IS NOT NULL GROUP BY 1) m ON m.day = d.day
              WHERE ($1::timestamptz IS NULL OR d.day >= ($1::timestamptz AT TIME ZONE 'UTC')::date)
                AND ($2::timestamptz IS NULL OR d.day < ($2::timestamptz AT TIME ZONE 'UTC')::date)
              ORDER BY d.day`,
      values: [period.from ?? null, period.to ?? null],
    };
  },
};

const ratio = (numerator: number, denominator: number) => (denominator > 0 ? numerator / denominator : null);

export function createReport({ pool }: { pool: Queryable }) {
  const waste = createWasteReport({ pool });
  return {
    async summary(period: ReportPeriod): Promise<PolicyReport> {
      const [totals, coverage, serves, staleness, missed, refreshes] = await Promise.all([
        waste.totals(period),
        pool.query<{ active_known: number; covered: number }>(sql.coverage(period)),
        pool.query<{ source: string; n: number; p50: number; p99: number }>(sql.serves(period)),
        pool.query<{ p50: number | null; p95: number | null }>(sql.staleness(period)),
        pool.query<{ counted: number; behind: number; p50: number | null; p95: number | null }>(sql.missed(period)),
        pool.query<{ n: number; ms: number }>(sql.refreshes(period)),
      ]);
      const behind = Number(missed.rows[0]?.behind ?? 0);
      const cov = coverage.rows[0] ?? { active_known: 0, covered: 0 };
      const bySource = Object.fromEntries(serves.rows.map((row) => [row.source, row.n]));
      const logins = serves.rows.reduce((total, row) => total + row.n, 0);
      return {
        precomputes: totals.precomputes,
        wasted: totals.wasted,
        waste: totals.waste,
        coverage: ratio(cov.covered, cov.active_known),
        loginCoverage: ratio(bySource.precomputed ?? 0, logins),
        logins,
        knownActiveUserWindows: cov.active_known,
        stalenessP50Ms: staleness.rows[0]?.p50 ?? null,
        stalenessP95Ms: staleness.rows[0]?.p95 ?? null,
        onDemand: totals.onDemandSets,
        batchComputeMs: totals.batchComputeMs + totals.holdoutComputeMs,
        onDemandComputeMs: totals.onDemandComputeMs,
        latencyP50Ms: Object.fromEntries(serves.rows.map((row) => [row.source, row.p50])),
        latencyP99Ms: Object.fromEntries(serves.rows.map((row) => [row.source, row.p99])),
        servesBySource: bySource,
        behindServes: behind,
        // Null when no serve was counted (interactions imported, not fed through the API).
        behindShare: Number(missed.rows[0]?.counted ?? 0) > 0 ? ratio(behind, logins) : null,
        missedP50: missed.rows[0]?.p50 ?? null,
        missedP95: missed.rows[0]?.p95 ?? null,
        refreshes: Number(refreshes.rows[0]?.n ?? 0),
        refreshComputeMs: refreshes.rows[0]?.ms ?? 0,
      };
    },
    async daily(period: ReportPeriod): Promise<DailyPoint[]> {
      const result = await pool.query<{
        day: string;
        logins: number;
        login_coverage: number | null;
        coverage: number | null;
        waste_rate: number | null;
        p50: number | null;
        behind_share: number | null;
        missed_p95: number | null;
      }>(sql.daily(period));
      return result.rows.map((row) => ({
        day: row.day,
        logins: row.logins,
        loginCoverage: row.login_coverage,
        coverage: row.coverage,
        waste: row.waste_rate,
        stalenessP50Ms: row.p50,
        behindShare: row.behind_share,
        missedP95: row.missed_p95,
      }));
    },
  };
}

export type Report = ReturnType<typeof createReport>;
