import { withTransaction, type Pool } from '../db/pool.ts';
import { rollupSql as sql } from './sql.ts';

/** The rolled-up tables: serves_daily (migrations/0008) and those of migrations/0011. */
export type RollupTable = 'serves_daily' | 'waste_daily' | 'cost_daily' | 'waste_runs' | 'coverage_runs' | 'calibration_snapshot';

export type RollupAction = TableRollupAction | ServeCountsAction;

/**
 * The serve counts of the sets computed since `from` made equal to their serves (`sets`: how many
 * changed; none in a dry run). `recommendations.serve_count` and `first_served_at` are derived
 * here, not on the login path (src/serving/event-recorder.ts).
 */
export interface ServeCountsAction {
  kind: 'serve_counts';
  from: string;
  sets: number | null;
}

export interface TableRollupAction {
  kind: 'rollup';
  table: RollupTable;
  /** Days [from, to) (YYYY-MM-DD); for the run tables, the first and last run's scheduled_for; for the calibration, when. */
  from: string;
  to: string;
  /** Runs rolled up (run tables), or covered (the calibration). */
  runs?: number;
}

/** Where a pass records what it did (the maintenance report's actions). */
export interface ActionLog {
  push(action: RollupAction): number;
}

export interface RollupDeps {
  pool: Pool;
  /** A day or a run is final this long after it ended (late event flushes). */
  graceMs: number;
  /** Days per transaction. */
  batchDays: number;
  /** Runs per transaction. Default 100. */
  runsPerBatch?: number;
}

export interface Rollups {
  /**
   * Rolls up what is final at `now` (or at the database's clock, if earlier: the views judge at
   * it), and returns the raw horizon: the earliest instant (ms) the views' raw parts still read
   * from logins, serves and recommendations; null when nothing bounds it.
   */
  run(now: Date, dryRun: boolean, actions: ActionLog): Promise<number | null>;
}

const DAY_MS = 86_400_000;
/**
 * Sets whose life ended longer than this (plus the grace) ago are no longer counted again: their
 * serves are all in. Every pass within it counts them again from scratch, so a flush arriving up
 * to this late is counted, and a pass that failed is made up by the next.
 */
const SERVE_COUNTS_SETTLE_MS = DAY_MS;
const isoDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);
const dayMs = (day: string) => Date.parse(`${day}T00:00:00Z`);

/**
 * Makes `serve_count` and `first_served_at` of the sets whose life had not ended a day before
 * `cutoff` equal to their serves; returns where it counted from and how many sets changed (null
 * in a dry run). Run by every maintenance pass.
 *
 * Absolute counts, not increments: a serve cannot precede its set, so the serves since `from`
 * are all the serves of the sets computed since `from`, and counting them again changes nothing.
 */
export async function fillServeCounts(pool: Pool, cutoff: Date, dryRun = false): Promise<Omit<ServeCountsAction, 'kind'>> {
  const settledBefore = new Date(cutoff.getTime() - SERVE_COUNTS_SETTLE_MS);
  const from = (await pool.query<{ from_at: Date | null }>(sql.serveCountsFrom(settledBefore))).rows[0]?.from_at ?? settledBefore;
  const sets = dryRun ? null : ((await pool.query(sql.fillServeCounts(from))).rowCount ?? 0);
  return { from: from.toISOString(), sets };
}

/**
 * The serve counts of every set, whenever computed (a replay's schema at its end: its sets span
 * the whole log); returns how many changed.
 */
export async function fillAllServeCounts(pool: Pool): Promise<number> {
  return (await pool.query(sql.fillServeCounts('everything'))).rowCount ?? 0;
}

/** Fills waste_daily, cost_daily, waste_runs, coverage_runs and calibration_snapshot (migrations/0011). */
export function createRollups(deps: RollupDeps): Rollups {
  const { pool, graceMs, batchDays } = deps;
  const runsPerBatch = deps.runsPerBatch ?? 100;

  async function rollDays(name: 'waste_daily' | 'cost_daily', limitDay: string, dryRun: boolean, actions: ActionLog) {
    const progress = (await pool.query<{ day: string }>(sql.rolledThrough(name))).rows[0]?.day;
    let from = progress ?? (await pool.query<{ day: string | null }>(sql.firstSetDay)).rows[0]?.day ?? limitDay;
    // No set before `from`: the days before it are rolled up, empty.
    if (progress === undefined && !dryRun) await pool.query(sql.setRolledThrough(name, from));
    while (from < limitDay) {
      const to = isoDay(Math.min(dayMs(from) + batchDays * DAY_MS, dayMs(limitDay)));
      actions.push({ kind: 'rollup', table: name, from, to });
      if (!dryRun) {
        const range = { from, to };
        await withTransaction(pool, async (client) => {
          const [clear, fill] = name === 'waste_daily' ? [sql.clearWasteDaily, sql.fillWasteDaily] : [sql.clearCostDaily, sql.fillCostDaily];
          await client.query(clear(range.from, range.to));
          await client.query(fill(range.from, range.to));
          await client.query(sql.setRolledThrough(name, range.to));
        });
      }
      from = to;
    }
  }

  async function rollRuns(name: 'waste_runs' | 'coverage_runs', cutoff: Date, dryRun: boolean, actions: ActionLog, coverageFunction = true) {
    for (;;) {
      const query = name === 'waste_runs' ? sql.finalWasteRuns(cutoff, runsPerBatch) : sql.finalCoverageRuns(cutoff, runsPerBatch);
      const runs = (await pool.query<{ id: number; scheduled_for: Date }>(query)).rows;
      if (runs.length === 0) return;
      actions.push({ kind: 'rollup', table: name, from: runs[0]!.scheduled_for.toISOString(), to: runs.at(-1)!.scheduled_for.toISOString(), runs: runs.length });
      // A dry run cannot see past the first batch: the next depends on this one being written.
      if (dryRun) return;
      const ids = runs.map((run) => run.id);
      const fillCoverage = coverageFunction ? sql.fillCoverageRuns : sql.fillCoverageRunsBefore0014;
      await pool.query(name === 'waste_runs' ? sql.fillWasteRuns(ids) : fillCoverage(ids));
      if (runs.length < runsPerBatch) return;
    }
  }

  // The whole calibration at once (it pools every ended run), when the set of ended runs changed
  // and the newest ended over the grace ago; until then the view computes it from raw tables.
  async function refreshCalibration(dryRun: boolean, actions: ActionLog) {
    const state = (await pool.query<{ stale: boolean; settled: boolean; runs: number }>(sql.calibrationState(graceMs))).rows[0]!;
    if (!state.stale || !state.settled) return;
    const at = new Date().toISOString();
    actions.push({ kind: 'rollup', table: 'calibration_snapshot', from: at, to: at, runs: state.runs });
    if (dryRun) return;
    await withTransaction(pool, async (client) => {
      await client.query(sql.clearCalibration);
      await client.query(sql.fillCalibration);
    });
  }

  async function countServes(cutoff: Date, dryRun: boolean, actions: ActionLog) {
    // Reported when it changed something; a dry run cannot tell what would change without counting.
    if (dryRun) return;
    const counted = await fillServeCounts(pool, cutoff);
    if (counted.sets !== 0) actions.push({ kind: 'serve_counts', ...counted });
  }

  return {
    async run(now, dryRun, actions) {
      const { now: dbNow, migrated, coverage_function: coverageFunction } = (await pool.query<{ now: Date; migrated: boolean; coverage_function: boolean }>(sql.dbNow)).rows[0]!;
      // A schema before migration 0011 (the tests of older migrations) has only serves_daily.
      if (!migrated) return null;
      const cutoff = new Date(Math.min(now.getTime(), dbNow.getTime()) - graceMs);
      const closedThrough = isoDay(Math.floor(cutoff.getTime() / DAY_MS) * DAY_MS);
      await countServes(cutoff, dryRun, actions);
      await rollDays('waste_daily', closedThrough, dryRun, actions);
      const firstOpen = (await pool.query<{ day: string | null }>(sql.firstOpenCostDay(cutoff))).rows[0]?.day ?? null;
      await rollDays('cost_daily', firstOpen !== null && firstOpen < closedThrough ? firstOpen : closedThrough, dryRun, actions);
      await rollRuns('waste_runs', cutoff, dryRun, actions);
      await rollRuns('coverage_runs', cutoff, dryRun, actions, coverageFunction);
      await refreshCalibration(dryRun, actions);
      const horizon = (await pool.query<{ horizon_ms: number | string | null }>(sql.rawHorizon)).rows[0]?.horizon_ms ?? null;
      return horizon === null ? null : Number(horizon);
    },
  };
}
