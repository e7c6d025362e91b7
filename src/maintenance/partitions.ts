import type { Clock } from '../clock.ts';
import { ADVISORY_LOCKS } from '../db/locks.ts';
import { withTransaction, type Pool, type PoolClient } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { createRollups, type RollupAction } from './rollups.ts';
import { maintenanceSql as sql } from './sql.ts';

export type PartitionPeriod = 'day' | 'month';

export interface PartitionedTable {
  table: 'logins' | 'serves' | 'recommendations' | 'predictions';
  key: string;
  period: PartitionPeriod;
}

/**
 * The partitioned tables and their periods, sized for 100M users and 2M logins a day
 * (README "Retention and partitions"): logins ≈ 0.3 GB and serves ≈ 0.5 GB a day → monthly;
 * recommendations ≈ 5M sets × 1.7 kB ≈ 8 GB and predictions 100M scores ≈ 10 GB a day → daily.
 */
export const PARTITIONED_TABLES: readonly PartitionedTable[] = [
  { table: 'logins', key: 'at', period: 'month' },
  { table: 'serves', key: 'at', period: 'month' },
  { table: 'recommendations', key: 'computed_at', period: 'day' },
  { table: 'predictions', key: 'created_at', period: 'day' },
];

export interface PartitionMaintenanceDeps {
  pool: Pool;
  clock: Clock;
  log: Logger;
  /** PREWARM_RETENTION: partitions wholly older than now − this are dropped (when nothing needs them). */
  retentionMs: number;
  /** Periods created ahead of the current one. Default 2 (two days, two months). */
  aheadPeriods?: number;
  /** A day is rolled up once it ended this long ago (late event flushes). Default 1 hour. */
  rollupGraceMs?: number;
  /** Days rolled up per transaction. Default 31. */
  rollupBatchDays?: number;
  /** lock_timeout of each DDL transaction, so maintenance never queues the serving path behind it. Default 5 s. */
  lockTimeoutMs?: number;
}

export type MaintenanceAction =
  | { kind: 'create'; table: string; partition: string; from: string; to: string; movedRows: number }
  | { kind: 'drop'; table: string; partition: string; from: string | null; to: string }
  | { kind: 'keep'; table: string; partition: string; to: string; reason: string }
  | RollupAction;

export interface MaintenanceReport {
  /** True when another process held the maintenance lock: nothing was done. */
  skipped: boolean;
  dryRun: boolean;
  /** now − retention, as judged. */
  cutoff: string;
  actions: MaintenanceAction[];
}

export interface PartitionMaintenance {
  /** One pass: roll up what is final, create partitions ahead (moving default rows), drop expired. */
  run(options?: { dryRun?: boolean }): Promise<MaintenanceReport>;
}

interface PartitionRow {
  name: string;
  is_default: boolean;
  from_at: Date | null;
  to_at: Date | null;
}

const DAY_MS = 86_400_000;

/** Start of the UTC day or month holding `at`, moved by `n` periods. */
export function periodStart(at: Date, period: PartitionPeriod, n = 0): Date {
  if (period === 'day') return new Date(Math.floor(at.getTime() / DAY_MS) * DAY_MS + n * DAY_MS);
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + n, 1));
}

/** `serves_p202601`, `recommendations_p20260115`; a piece not starting on its period gets the start's epoch seconds. */
export function partitionName(table: string, period: PartitionPeriod, from: Date): string {
  const cell = periodStart(from, period);
  const iso = cell.toISOString();
  const base = `${table}_p${iso.slice(0, 4)}${iso.slice(5, 7)}${period === 'day' ? iso.slice(8, 10) : ''}`;
  return cell.getTime() === from.getTime() ? base : `${base}_${Math.floor(from.getTime() / 1000)}`;
}

/** The parts of [from, to) no existing partition covers. */
function uncovered(from: Date, to: Date, ranges: readonly PartitionRow[]): Array<[Date, Date]> {
  const pieces: Array<[Date, Date]> = [];
  let start = from.getTime();
  const end = to.getTime();
  const sorted = ranges
    .filter((r) => !r.is_default)
    .map((r) => [r.from_at?.getTime() ?? -Infinity, r.to_at?.getTime() ?? Infinity] as const)
    .sort((a, b) => a[0] - b[0]);
  for (const [lo, hi] of sorted) {
    if (hi <= start || lo >= end) continue;
    if (lo > start) pieces.push([new Date(start), new Date(lo)]);
    start = Math.max(start, hi);
    if (start >= end) break;
  }
  if (start < end) pieces.push([new Date(start), new Date(end)]);
  return pieces;
}

const isoDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/**
 * Partition maintenance, run by the scheduler every hour and by `prewarm maintain`. Safe with
 * several schedulers: one pass at a time holds an advisory lock; the others skip.
 *
 * Retention rule: a partition is dropped when its whole range ends at or before now − retention,
 * and nothing still needs it — recommendations: no set in it is fresh (expires_at > now) or
 * belongs to an unfinished run; predictions: none belongs to a run that is unfinished or whose
 * window has not ended; serves: the daily rollup covers its range; logins, serves and
 * recommendations: the raw parts of the waste, cost and coverage views no longer read it (their
 * rollups, src/maintenance/rollups.ts, cover it).
 */
export function createPartitionMaintenance(deps: PartitionMaintenanceDeps): PartitionMaintenance {
  const { pool, clock, log, retentionMs } = deps;
  const ahead = deps.aheadPeriods ?? 2;
  const graceMs = deps.rollupGraceMs ?? 3_600_000;
  const batchDays = deps.rollupBatchDays ?? 31;
  const lockTimeoutMs = deps.lockTimeoutMs ?? 5_000;
  const rollups = createRollups({ pool, graceMs, batchDays });

  const ddl = <T>(work: (client: PoolClient) => Promise<T>) =>
    withTransaction(pool, async (client) => {
      await client.query(sql.lockTimeout(lockTimeoutMs));
      return work(client);
    });

  async function rollupServes(now: Date, dryRun: boolean, actions: MaintenanceAction[]): Promise<string | null> {
    const progress = await pool.query<{ day: string }>(sql.servesRolledThrough);
    let from = progress.rows[0]?.day ?? (await pool.query<{ day: string | null }>(sql.firstServeDay)).rows[0]?.day ?? null;
    const closedThrough = isoDay(Math.floor((now.getTime() - graceMs) / DAY_MS) * DAY_MS);
    if (from === null) return null;
    let rolled = false;
    while (from < closedThrough) {
      rolled = true;
      const to = isoDay(Math.min(Date.parse(`${from}T00:00:00Z`) + batchDays * DAY_MS, Date.parse(`${closedThrough}T00:00:00Z`)));
      actions.push({ kind: 'rollup', table: 'serves_daily', from, to });
      if (!dryRun) {
        const range = { from, to };
        await withTransaction(pool, async (client) => {
          await client.query(sql.rollupServes(range.from, range.to));
          await client.query(sql.setServesRolledThrough(range.to));
        });
      }
      from = to;
    }
    // Serves partitions may go only where the rollup has taken over.
    return progress.rows[0] !== undefined || rolled ? from : null;
  }

  async function maintainTable(spec: PartitionedTable, now: Date, cutoff: Date, servesRolledThrough: Date | null, rawHorizonMs: number | null, dryRun: boolean, actions: MaintenanceAction[]) {
    const { table, key, period } = spec;
    const partitions = (await pool.query<PartitionRow>(sql.partitions(table))).rows;
    const inDefault = new Map<number, number>();
    if (partitions.some((p) => p.is_default)) {
      for (const row of (await pool.query<{ cell: Date; n: number }>(sql.defaultRows(table, key, period))).rows) inDefault.set(row.cell.getTime(), row.n);
    }
    const cells = new Set<number>(inDefault.keys());
    for (let n = 0; n <= ahead; n++) cells.add(periodStart(now, period, n).getTime());
    for (const cellMs of [...cells].sort((a, b) => a - b)) {
      const cell = new Date(cellMs);
      for (const [from, to] of uncovered(cell, periodStart(cell, period, 1), partitions)) {
        const partition = partitionName(table, period, from);
        const movedRows = inDefault.get(cellMs) ?? 0;
        actions.push({ kind: 'create', table, partition, from: from.toISOString(), to: to.toISOString(), movedRows });
        if (dryRun) continue;
        await ddl(async (client) => {
          if (movedRows > 0) {
            await client.query(sql.createMoving(table));
            await client.query(sql.takeFromDefault(table, key, from, to));
          }
          await client.query(sql.createPartition(table, partition, from, to));
          if (movedRows > 0) await client.query(sql.putBack(table));
        });
        if (movedRows > 0) log.warn({ table, partition, movedRows }, 'rows of the default partition moved into a new partition');
        partitions.push({ name: partition, is_default: false, from_at: from, to_at: to });
      }
    }

    // Serves not rolled up yet (none at all, or no closed day) keep every partition.
    const cutoffMs = table === 'serves' ? Math.min(cutoff.getTime(), servesRolledThrough?.getTime() ?? -Infinity) : cutoff.getTime();
    for (const p of partitions) {
      if (p.is_default || p.to_at === null || !(p.to_at.getTime() <= cutoffMs)) continue;
      const to = p.to_at.toISOString();
      if (table === 'recommendations' || table === 'predictions') {
        const check = table === 'recommendations' ? sql.recommendationsNeeded(p.name, now) : sql.predictionsNeeded(p.name, now);
        const needed = (await pool.query<{ fresh: boolean; unfinished: boolean }>(check)).rows[0];
        if (needed?.fresh || needed?.unfinished) {
          actions.push({ kind: 'keep', table, partition: p.name, to, reason: needed.fresh ? 'holds a fresh set' : 'holds an unfinished run' });
          continue;
        }
      }
      // The waste, cost and coverage views read these tables until their rollups take over.
      if (table !== 'predictions' && rawHorizonMs !== null && p.to_at.getTime() > rawHorizonMs) {
        actions.push({ kind: 'keep', table, partition: p.name, to, reason: 'not rolled up yet' });
        continue;
      }
      actions.push({ kind: 'drop', table, partition: p.name, from: p.from_at?.toISOString() ?? null, to });
      if (!dryRun) {
        await ddl((client) => client.query(sql.dropPartition(p.name)));
        log.info({ table, partition: p.name, to }, 'partition older than the retention dropped');
      }
    }
  }

  return {
    async run(options = {}) {
      const dryRun = options.dryRun ?? false;
      const now = clock.now();
      const cutoff = new Date(now.getTime() - retentionMs);
      const report: MaintenanceReport = { skipped: false, dryRun, cutoff: cutoff.toISOString(), actions: [] };
      const lockClient = await pool.connect();
      try {
        const locked = await lockClient.query<{ ok: boolean }>(sql.tryLock, [ADVISORY_LOCKS.partitionMaintenance]);
        if (!locked.rows[0]?.ok) return { ...report, skipped: true };
        try {
          const rolledThrough = await rollupServes(now, dryRun, report.actions);
          const servesRolledThrough = rolledThrough === null ? null : new Date(`${rolledThrough}T00:00:00Z`);
          const rawHorizonMs = await rollups.run(now, dryRun, report.actions);
          for (const spec of PARTITIONED_TABLES) await maintainTable(spec, now, cutoff, servesRolledThrough, rawHorizonMs, dryRun, report.actions);
        } finally {
          await lockClient.query(sql.unlock, [ADVISORY_LOCKS.partitionMaintenance]);
        }
      } finally {
        lockClient.release();
      }
      return report;
    },
  };
}

export interface MaintenanceScheduleOptions {
  maintenance: PartitionMaintenance;
  log: Logger;
  /** Default 1 hour. */
  everyMs?: number;
  /** First pass after this long, so a starting process is not slowed. Default 30 s. */
  firstAfterMs?: number;
}

/** Runs maintenance on an interval (the scheduler process); returns a stop function that waits for a pass in progress. */
export function startMaintenanceSchedule(options: MaintenanceScheduleOptions): () => Promise<void> {
  const { maintenance, log } = options;
  let running: Promise<void> | undefined;
  const tick = () => {
    running ??= maintenance
      .run()
      .then((report) => {
        if (!report.skipped) log.debug({ actions: report.actions.length }, 'partition maintenance done');
      })
      .catch((error: unknown) => log.error({ err: error }, 'partition maintenance failed; next pass retries'))
      .finally(() => (running = undefined));
  };
  const first = setTimeout(tick, options.firstAfterMs ?? 30_000);
  first.unref();
  const timer = setInterval(tick, options.everyMs ?? 3_600_000);
  timer.unref();
  return async () => {
    clearTimeout(first);
    clearInterval(timer);
    await running;
  };
}
