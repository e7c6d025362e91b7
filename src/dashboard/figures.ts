import type { Clock } from '../clock.ts';
import type { Queryable } from '../db/pool.ts';
import { nextOccurrence } from '../planner/cron.ts';
import { toRun, type BatchRun, type BatchRunColumns } from '../planner/runs.ts';
import { dashboardSql, type Day } from './sql.ts';

/** A batch run with its waste and coverage from the views. */
export interface RunFigures extends BatchRun {
  /** Policy sets (holdout excluded) the run wrote, of which `setsEnded` have ended their life. */
  sets: number;
  setsEnded: number;
  setsServed: number;
  setsWasted: number;
  /** wasted / ended so far; null until a set has ended. Final once `windowEnded`. */
  wasteRate: number | null;
  /** Whether the window [scheduled_for, expires_at) is over: coverage and waste are then final. */
  windowEnded: boolean;
  activeKnown: number;
  covered: number;
  /** Known only once the window has ended (null before). */
  coverage: number | null;
}

/** A run as `batch_runs` holds it, with its figures from the waste and coverage views. */
interface RunRow extends BatchRunColumns {
  sets: number | null;
  sets_ended: number | null;
  sets_served: number | null;
  sets_wasted: number | null;
  waste_rate: number | null;
  active_known: number | null;
  covered: number | null;
  coverage: number | null;
}

function toRunFigures(row: RunRow, now: Date): RunFigures {
  const windowEnded = row.expires_at.getTime() <= now.getTime();
  return {
    ...toRun(row),
    sets: row.sets ?? 0,
    setsEnded: row.sets_ended ?? 0,
    setsServed: row.sets_served ?? 0,
    setsWasted: row.sets_wasted ?? 0,
    wasteRate: row.waste_rate,
    windowEnded,
    activeKnown: row.active_known ?? 0,
    covered: row.covered ?? 0,
    coverage: windowEnded ? row.coverage : null,
  };
}

export interface ChunkFailure {
  chunkNo: number;
  users: number;
  failed: number;
  error: string | null;
}

export interface WindowFigures {
  name: string;
  cron: string;
  timezone: string;
  horizonMs: number;
  ttlMs: number;
  policy: string;
  enabled: boolean;
  nextOccurrence: Date | null;
  /** Newest first. */
  lastRuns: RunFigures[];
}

/** One UTC day; null where the views have no row for the day. */
export interface DayFigures {
  day: Day;
  /** waste_by_day summed over windows: wasted / ended. */
  waste: number | null;
  setsEnded: number;
  setsWasted: number;
  /** coverage_by_day summed over windows: covered / active known. */
  coverage: number | null;
  activeKnown: number;
  covered: number;
  /** login_coverage_by_day: precomputed / logins. */
  loginCoverage: number | null;
  logins: number;
  precomputed: number;
  reused: number;
  onDemand: number;
  fallback: number;
  /** Logins answered by a computation at login: on_demand / logins. */
  onDemandShare: number | null;
  /** staleness_by_day, source precomputed. */
  stalenessP50Ms: number | null;
  stalenessP95Ms: number | null;
  /**
   * missed_interactions_by_day: logins served a set that missed interactions of its user /
   * logins; null when no serve of the day was counted (interactions not fed through the API).
   */
  behindShare: number | null;
  /** missed_interactions_by_day, source precomputed: missed interactions per serve, p95. */
  missedP95: number | null;
  batchSets: number;
  batchComputeMs: number;
  onDemandSets: number;
  onDemandComputeMs: number;
  /** Users the day's runs scored: what "precompute all" would have computed. */
  candidates: number;
}

export interface LatencyFigures {
  day: Day;
  source: string;
  serves: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface ReliabilityFigures {
  version: string;
  trainedAt: Date;
  deciles: { decile: number; count: number; meanPredicted: number; observedRate: number }[];
}

/** The headline figures over the period. */
export interface Headline {
  /**
   * 1 − compute spent (batch + on demand) / compute of precomputing every scored user at every
   * run (candidates × mean batch compute per set); null without batch sets to price a set.
   */
  computeSaved: number | null;
  /** Σ precomputed / Σ logins. */
  loginCoverage: number | null;
  /** Σ covered / Σ active known. */
  coverage: number | null;
  /** Σ wasted / Σ ended. */
  waste: number | null;
  /** Σ on_demand / Σ logins. */
  onDemandShare: number | null;
  logins: number;
  /** Median age of precomputed sets served on the latest day that had one, and that day. */
  medianAgeMs: number | null;
  medianAgeDay: Day | null;
}

export interface Overview {
  from: Day;
  to: Day;
  /** The one window waste, coverage and users scored are restricted to; null for every window. */
  window: string | null;
  generatedAt: Date;
  headline: Headline;
  days: DayFigures[];
  windows: WindowFigures[];
  latency: LatencyFigures[];
  reliability: ReliabilityFigures | null;
}

const ratio = (part: number, whole: number) => (whole > 0 ? part / whole : null);
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
const DAY_MS = 86_400_000;

export function dayOf(at: Date): Day {
  return at.toISOString().slice(0, 10);
}

export function headlineOf(days: readonly DayFigures[]): Headline {
  const total = (pick: (day: DayFigures) => number) => sum(days.map(pick));
  const batchSets = total((d) => d.batchSets);
  const batchMs = total((d) => d.batchComputeMs);
  const spentMs = batchMs + total((d) => d.onDemandComputeMs);
  const precomputeAllMs = batchSets > 0 ? total((d) => d.candidates) * (batchMs / batchSets) : 0;
  const latestAge = [...days].reverse().find((d) => d.stalenessP50Ms !== null);
  const logins = total((d) => d.logins);
  return {
    computeSaved: precomputeAllMs > 0 ? 1 - spentMs / precomputeAllMs : null,
    loginCoverage: ratio(total((d) => d.precomputed), logins),
    coverage: ratio(total((d) => d.covered), total((d) => d.activeKnown)),
    waste: ratio(total((d) => d.setsWasted), total((d) => d.setsEnded)),
    onDemandShare: ratio(total((d) => d.onDemand), logins),
    logins,
    medianAgeMs: latestAge?.stalenessP50Ms ?? null,
    medianAgeDay: latestAge?.day ?? null,
  };
}

export interface DashboardFiguresDeps {
  pool: Queryable;
  clock: Clock;
}

/** The read model of the dashboard and of `prewarm runs`: figures from the documented views. */
export function createDashboardFigures({ pool, clock }: DashboardFiguresDeps) {
  async function daily(from: Day, to: Day, window: string | null): Promise<DayFigures[]> {
    const rows = (await pool.query<Record<string, number | null> & { day: Day }>(dashboardSql.daily(from, to, window))).rows;
    return rows.map((row) => {
      const n = (key: string) => row[key] ?? 0;
      return {
        day: row.day,
        waste: ratio(n('sets_wasted'), n('sets_ended')),
        setsEnded: n('sets_ended'),
        setsWasted: n('sets_wasted'),
        coverage: ratio(n('covered'), n('active_known')),
        activeKnown: n('active_known'),
        covered: n('covered'),
        loginCoverage: ratio(n('precomputed'), n('logins')),
        logins: n('logins'),
        precomputed: n('precomputed'),
        reused: n('reused'),
        onDemand: n('on_demand'),
        fallback: n('fallback'),
        onDemandShare: ratio(n('on_demand'), n('logins')),
        stalenessP50Ms: row.staleness_p50_ms ?? null,
        stalenessP95Ms: row.staleness_p95_ms ?? null,
        behindShare: n('counted_serves') > 0 ? ratio(n('behind_serves'), n('logins')) : null,
        missedP95: row.missed_p95 ?? null,
        batchSets: n('batch_sets'),
        batchComputeMs: n('batch_ms'),
        onDemandSets: n('on_demand_sets'),
        onDemandComputeMs: n('on_demand_ms'),
        candidates: n('candidates'),
      };
    });
  }

  async function windows(now: Date, runsPerWindow: number): Promise<WindowFigures[]> {
    const [windowRows, runRows] = await Promise.all([
      pool.query<{ name: string; cron: string; timezone: string; horizon_ms: number; ttl_ms: number; policy: string; enabled: boolean }>(dashboardSql.windows()),
      pool.query<RunRow>(dashboardSql.lastRunsPerWindow(runsPerWindow)),
    ]);
    return windowRows.rows.map((w) => ({
      name: w.name,
      cron: w.cron,
      timezone: w.timezone,
      horizonMs: w.horizon_ms,
      ttlMs: w.ttl_ms,
      policy: w.policy,
      enabled: w.enabled,
      nextOccurrence: w.enabled ? (nextOccurrence(w.cron, w.timezone, now) ?? null) : null,
      lastRuns: runRows.rows.filter((r) => r.window_name === w.name).map((r) => toRunFigures(r, now)),
    }));
  }

  /** The figures of the UTC days [from, to]; the windows table is the caller's (`windowFigures`). */
  async function figuresOf(from: Day, to: Day, window: string | null, now: Date, windowFigures: Promise<WindowFigures[]>): Promise<Overview> {
    const [days, windowRows, latencyRows, reliabilityRows] = await Promise.all([
      daily(from, to, window),
      windowFigures,
      pool.query<{ day: Day; source: string; serves: number; p50_ms: number; p99_ms: number; max_ms: number }>(dashboardSql.latency(from, to)),
      pool.query<{ version: string; trained_at: Date; decile: number; count: number; mean_predicted: number; observed_rate: number }>(dashboardSql.latestModelReliability()),
    ]);
    const first = reliabilityRows.rows[0];
    const headline = headlineOf(days);
    return {
      from,
      to,
      window,
      generatedAt: now,
      // On-demand compute belongs to no window: set against one window's runs it would not compare like with like.
      headline: window === null ? headline : { ...headline, computeSaved: null },
      days,
      windows: windowRows,
      latency: latencyRows.rows.map((r) => ({ day: r.day, source: r.source, serves: r.serves, p50Ms: r.p50_ms, p99Ms: r.p99_ms, maxMs: r.max_ms })),
      reliability: first
        ? {
            version: first.version,
            trainedAt: first.trained_at,
            deciles: reliabilityRows.rows.map((r) => ({ decile: r.decile, count: r.count, meanPredicted: r.mean_predicted, observedRate: r.observed_rate })),
          }
        : null,
    };
  }

  return {
    /** Everything the dashboard shows, for the `days` UTC days ending today. */
    async overview(options: { days: number; runsPerWindow?: number }): Promise<Overview> {
      const now = clock.now();
      const to = dayOf(now);
      const from = dayOf(new Date(now.getTime() - (options.days - 1) * DAY_MS));
      return figuresOf(from, to, null, now, windows(now, options.runsPerWindow ?? 3));
    },

    /**
     * The dashboard's figures for the UTC days [from, to] (`prewarm report --format html`), of one
     * window's runs or of all; `from` defaults to the first day with a serve or a run, `to` to today.
     * No windows table: a report is about the period, not about the next occurrences.
     */
    async period(options: { from?: Day | undefined; to?: Day | undefined; window?: string | undefined }): Promise<Overview> {
      const now = clock.now();
      const window = options.window ?? null;
      const to = options.to ?? dayOf(now);
      let from = options.from;
      if (from === undefined) {
        const first = (await pool.query<{ day: Day | null }>(dashboardSql.firstDay(window))).rows[0]?.day ?? null;
        from = first !== null && first < to ? first : to;
      }
      return figuresOf(from, to, window, now, Promise.resolve([]));
    },

    /** Whether `name` is a window, or was one and left runs. */
    async knowsWindow(name: string): Promise<boolean> {
      return (await pool.query<{ known: boolean }>(dashboardSql.windowKnown(name))).rows[0]?.known === true;
    },

    windows: (runsPerWindow = 1) => windows(clock.now(), runsPerWindow),

    /** Runs newest first, optionally of one window. */
    async runs(options: { window?: string | undefined; limit?: number } = {}): Promise<RunFigures[]> {
      const now = clock.now();
      const rows = (await pool.query<RunRow>(dashboardSql.runs(options.window ?? null, options.limit ?? 20))).rows;
      return rows.map((row) => toRunFigures(row, now));
    },

    /** One run with its failed chunks (at most 20), or undefined. */
    async run(id: number): Promise<{ run: RunFigures; failures: ChunkFailure[] } | undefined> {
      const row = (await pool.query<RunRow>(dashboardSql.run(id))).rows[0];
      if (!row) return undefined;
      const failures = (await pool.query<{ chunk_no: number; users: number; failed: number; error: string | null }>(dashboardSql.chunkFailures(id, 20))).rows;
      return {
        run: toRunFigures(row, clock.now()),
        failures: failures.map((f) => ({ chunkNo: f.chunk_no, users: f.users, failed: f.failed, error: f.error })),
      };
    },
  };
}

export type DashboardFigures = ReturnType<typeof createDashboardFigures>;
