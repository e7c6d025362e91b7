import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { createReport, type DailyPoint, type PolicyReport } from '../accounting/report.ts';
import { createImporter } from '../activity/import.ts';
import { VirtualClock } from '../clock.ts';
import { migrate, quoteIdent } from '../db/migrate.ts';
import { createPool, type Pool, type Sql } from '../db/pool.ts';
import { runShutdownSteps, type ShutdownStep } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import { fillAllServeCounts } from '../maintenance/rollups.ts';
import { createPlanner } from '../planner/planner.ts';
import { formatPolicy, isModelFree, type Policy } from '../planner/policy.ts';
import { createRunStore } from '../planner/runs.ts';
import { createScheduler } from '../planner/scheduler.ts';
import { createSlotReleaser, waitForDueChunks } from '../planner/timing.ts';
import type { PropensityScorer } from '../planner/scorer.ts';
import { createWindowStore } from '../planner/windows.ts';
import { createPrecomputeWorker } from '../precompute/precompute-worker.ts';
import { createPrecomputeQueue } from '../precompute/queue.ts';
import { createRecencyScorer } from '../propensity/recency-scorer.ts';
import { buildItemCfModel, createItemCfRecommender } from '../recommender/item-cf.ts';
import { createQueueRedis, createServingRedis, deleteKeysWithPrefix } from '../redis.ts';
import type { RefreshBehind } from '../serving/service.ts';
import { createServingStack } from '../serving/stack.ts';
import { WINDOW_SPECS, type WindowSpec } from '../window-spec.ts';
import type { InteractionEvent, LoginEvent } from './generate.ts';
import { createInteractionFeed } from './interaction-feed.ts';

export interface ReplayData {
  /** Sorted by time. */
  logins: readonly LoginEvent[];
  /** Sorted by time. */
  interactions: readonly InteractionEvent[];
}

/** Trains whatever the scorer needs on the history before `from` and returns it. */
export type PrepareScorer = (args: { pool: Pool; from: Date; windowMs: number; log: Logger }) => Promise<PropensityScorer>;

/**
 * Retrains the scorer at `at` from what the replay recorded before it. The planner's model scorer
 * scores with the newest model, so training one is enough.
 */
export type RetrainScorer = (args: { pool: Pool; at: Date; windowMs: number; log: Logger }) => Promise<void>;

export interface ReplayOptions {
  databaseUrl: string;
  redisUrl: string;
  log: Logger;
  from: Date;
  to: Date;
  window: WindowSpec;
  /** Scorer for model policies (threshold, budget, coverage, waste, cost). */
  prepareScorer: PrepareScorer;
  /** Items per set. Default 20. */
  itemsPerSet?: number;
  /** How often the recommender is retrained on the interactions before the clock. Default 7 days. */
  retrainEveryMs?: number;
  /**
   * Model policies only: retrain the scorer this often on the virtual clock, as production's
   * scheduler does (PREWARM_PROPENSITY_RETRAIN_EVERY). Default: never — trained once before
   * `from`, the protocol of `evaluate`, so that the two agree.
   */
  retrainScorer?: { every: number; retrain: RetrainScorer };
  /** Holdout rate of the replay's window for model policies (baselines `all` and `none` use 0). Default 0.01. */
  holdoutRate?: number;
  /** Logins of distinct users answered at once, each at its own instant. Default 32. */
  loginConcurrency?: number;
  /**
   * Timed precompute (src/planner/timing.ts) for the policies that select (not `all`, `none`):
   * each selected user computed at the slot start before their likely login. Default: at the
   * window start, as a nightly window.
   */
  timing?: { slotMs: number; risk: number };
  /**
   * How the log's interactions after `from` reach the replay: `api` (default) through the
   * interactions API's recorder as the clock reaches them, so a set can be behind and serves
   * record what they missed; `import`, the importer's COPY of each window's at its start.
   */
  interactionFeed?: 'api' | 'import';
  /**
   * PREWARM_REFRESH_BEHIND of the replay's serving path. Default `never`: behind sets are
   * served and counted, not computed again, so waste and coverage stay those of `evaluate`.
   */
  refreshBehind?: RefreshBehind;
  /** Keep the replay's Postgres schemas for inspection. Default false. */
  keepSchemas?: boolean;
  onProgress?: (progress: ReplayProgress) => void;
}

export interface ReplayProgress {
  policy: string;
  simulatedAt: Date;
  logins: number;
  totalLogins: number;
  loginsPerSecond: number;
}

export interface PolicyRun {
  name: string;
  policy: string;
  schema: string;
  report: PolicyReport;
  daily: DailyPoint[];
  wallMs: number;
  logins: number;
  /**
   * Mean of `serves.missed_interactions` over the serves that counted it (every answer from a
   * set; not `fallback`); null when none did. The report gives its p50 and p95, not its mean.
   */
  missedMean: number | null;
}

const WINDOW_NAME = 'replay';

const sql = {
  maintain: 'VACUUM (ANALYZE) interactions, logins, user_activity, recommendations, serves, predictions, batch_runs, batch_chunks',
  missedMean(from: Date, to: Date): Sql {
    return {
      text: 'SELECT avg(missed_interactions)::float8 AS mean FROM serves WHERE missed_interactions IS NOT NULL AND at >= $1 AND at < $2',
      values: [from, to],
    };
  },
};

/**
 * Replays one policy over [from, to): a virtual clock walks the log; at each window start the
 * real scheduler claims the occurrence and the real planner enqueues chunks on a real BullMQ
 * queue that a real worker drains; then every login of the window goes through the real serving
 * path. Interactions are fed as the clock passes them, so no computation sees the future. Each
 * policy gets a Postgres schema and Redis prefix of its own.
 */
export async function replayPolicy(data: ReplayData, name: string, policy: Policy, options: ReplayOptions): Promise<PolicyRun> {
  const started = performance.now();
  const { log } = options;
  const { ms: windowMs, cron } = WINDOW_SPECS[options.window];
  const fromMs = options.from.getTime();
  const toMs = options.to.getTime();
  const tag = randomUUID().replaceAll('-', '').slice(0, 10);
  const schema = `replay_${tag}_${name.replace(/[^a-z0-9]/g, '_')}`;
  const prefix = `prewarm-replay-${tag}-${name}`;
  const pool = createPool({ databaseUrl: options.databaseUrl, schema, log, max: 8, applicationName: 'prewarm-replay' });
  const queueRedis = createQueueRedis(options.redisUrl, log);
  const cacheRedis = createServingRedis(options.redisUrl, log);
  const clock = new VirtualClock(fromMs);
  const shutdown: ShutdownStep[] = [];
  try {
    await migrate({ pool, schema, log });
    // History and interactions go in through the importer's COPY path, as a real import would.
    const importer = createImporter({ pool, log });
    await importer.importRows('logins', data.logins.filter((login) => login.at.getTime() < fromMs), 'replay history');

    const scorer = isModelFree(policy) ? createRecencyScorer({ pool }) : await options.prepareScorer({ pool, from: options.from, windowMs, log });
    const windows = createWindowStore({ pool, clock });
    const timing = policy.kind === 'all' || policy.kind === 'none' ? undefined : options.timing;
    const timed = timing ? { timing: 'predicted' as const, timingSlot: timing.slotMs, timingRisk: timing.risk } : {};
    await windows.set(WINDOW_NAME, { cron, timezone: 'UTC', horizon: windowMs, ttl: windowMs, policy, chunkSize: 500, holdoutRate: isModelFree(policy) ? 0 : (options.holdoutRate ?? 0.01), ...timed });

    const recommender = createItemCfRecommender({ pool, log, reloadIntervalMs: 0 });
    shutdown.push(['close recommender', () => recommender.close()]);
    const queue = createPrecomputeQueue({ connection: queueRedis, prefix, log });
    shutdown.push(['close precompute queue', () => queue.close()]);
    const itemsPerUser = options.itemsPerSet ?? 20;
    const serving = createServingStack({
      pool,
      redis: cacheRedis,
      recommender,
      clock,
      log,
      options: {
        cachePrefix: `${prefix}:`,
        serving: { latencyBudgetMs: 1_000, onDemandTtlMs: windowMs, onDemandConcurrency: 4, onDemandQueue: 1_000, setSize: itemsPerUser, refreshBehind: options.refreshBehind ?? 'never' },
        events: { flushIntervalMs: 1_000, maxBatch: 5_000 },
      },
    });
    const { store, cache, recorder, service } = serving;
    const planner = createPlanner({ pool, queue, scorer, clock, log, itemsPerUser });
    const runs = createRunStore({ pool });
    const scheduler = createScheduler({ windows, planner, runs, clock, log });
    const worker = createPrecomputeWorker({ connection: queueRedis, prefix, pool, recommender, store, cache, clock, log, concurrency: 4 });
    shutdown.unshift(['stop precompute worker', () => worker.close()]);
    const releaser = timing ? createSlotReleaser({ clock, dispatch: (now) => scheduler.dispatch(now), db: pool, slotMs: timing.slotMs }) : undefined;

    const logins = data.logins.filter((login) => login.at.getTime() >= fromMs && login.at.getTime() < toMs);
    let loginIndex = 0;
    let interactionIndex = data.interactions.findIndex((interaction) => interaction.at.getTime() >= fromMs);
    if (interactionIndex < 0) interactionIndex = data.interactions.length;
    await importer.importRows('interactions', data.interactions.slice(0, interactionIndex), 'replay interactions');
    const feed = options.interactionFeed === 'import' ? undefined : createInteractionFeed({ interactions: data.interactions, start: interactionIndex, recorder: serving.interactions });
    const retrainEveryMs = options.retrainEveryMs ?? 7 * 86_400_000;
    const loginConcurrency = options.loginConcurrency ?? 32;
    let trainedAt = -Infinity;
    let scorerTrainedAt = fromMs;
    const retrainScorer = isModelFree(policy) ? undefined : options.retrainScorer;
    const loopStarted = performance.now();

    for (let windowStart = fromMs; windowStart < toMs; windowStart += windowMs) {
      const windowEnd = Math.min(windowStart + windowMs, toMs);
      clock.set(windowStart);
      if (windowStart - trainedAt >= retrainEveryMs) {
        recommender.setModel(buildItemCfModel(data.interactions.slice(0, interactionIndex), { until: new Date(windowStart) }));
        trainedAt = windowStart;
        // Autovacuum cannot keep pace with a clock running thousands of times faster than real
        // time (and is off on some machines): without this, statistics describe empty tables and
        // the recommender's index-only history reads visit the heap. Measured on a week of
        // oulad-2013: the 'all' replay's batch phase 41 s → 19 s.
        await pool.query(sql.maintain);
      }
      // Interactions of this window are stored now; the recommender reads only those before
      // each computation's instant, so none is seen early.
      const feedFrom = interactionIndex;
      while (interactionIndex < data.interactions.length && (data.interactions[interactionIndex] as InteractionEvent).at.getTime() < windowEnd) interactionIndex++;
      if (interactionIndex > feedFrom && !feed) await importer.importRows('interactions', data.interactions.slice(feedFrom, interactionIndex), 'replay interactions');
      await feed?.feedBefore(windowStart);
      await recorder.flush();
      if (retrainScorer && windowStart - scorerTrainedAt >= retrainScorer.every) {
        await retrainScorer.retrain({ pool, at: new Date(windowStart), windowMs, log });
        scorerTrainedAt = windowStart;
      }

      const outcomes = await scheduler.tick(clock.now());
      for (const outcome of outcomes) {
        if (outcome.action === 'planned') await (releaser ? waitForDueChunks(pool, clock.now()) : waitForRun(runs, outcome.runId));
        else if (outcome.action === 'error') throw outcome.error;
      }

      // Logins are answered in slices of distinct users, each at its own instant: concurrency
      // without reordering any user's logins, and no computation sees past its login.
      releaser?.start(windowStart);
      while (loginIndex < logins.length && (logins[loginIndex] as LoginEvent).at.getTime() < windowEnd) {
        await feed?.feedBefore((logins[loginIndex] as LoginEvent).at.getTime() + 1);
        await releaser?.until((logins[loginIndex] as LoginEvent).at.getTime());
        const slice: LoginEvent[] = [];
        const users = new Set<string>();
        while (slice.length < loginConcurrency && loginIndex < logins.length) {
          const login = logins[loginIndex] as LoginEvent;
          if (login.at.getTime() >= windowEnd || users.has(login.userId) || login.at.getTime() >= (releaser?.next ?? windowEnd)) break;
          users.add(login.userId);
          slice.push(login);
          loginIndex++;
        }
        await feed?.feedBefore((slice[slice.length - 1] as LoginEvent).at.getTime() + 1);
        clock.set((slice[0] as LoginEvent).at);
        await Promise.all(slice.map((login) => service.getRecommendations(login.userId, itemsPerUser, { at: login.at, fromLog: true })));
      }
      // The window's remaining slots: sets for users who do not log in are computed (and counted) too.
      await feed?.feedBefore(windowEnd);
      await releaser?.until(windowEnd - 1);
      options.onProgress?.({
        policy: name,
        simulatedAt: new Date(windowEnd),
        logins: loginIndex,
        totalLogins: logins.length,
        loginsPerSecond: loginIndex / Math.max(0.001, (performance.now() - loopStarted) / 1000),
      });
    }
    clock.set(toMs);
    await serving.close();
    // As maintenance would have kept them over the log's span: each set's serve count and first serve.
    await fillAllServeCounts(pool);
    // The tables were bulk-loaded moments ago: fresh statistics keep the report's plans sane.
    // Named, so that only this replay's schema is analysed: a bare ANALYZE visits every table of
    // the database, other schemas included (minutes beside a large one).
    await pool.query('ANALYZE interactions, logins, user_activity, recommendations, serves, predictions, batch_runs, batch_chunks');
    const report = createReport({ pool });
    const period = { asOf: new Date(toMs), from: options.from, to: options.to };
    const missed = await pool.query<{ mean: number | null }>(sql.missedMean(options.from, options.to));
    return {
      name,
      policy: formatPolicy(policy),
      schema,
      report: await report.summary(period),
      daily: await report.daily(period),
      wallMs: performance.now() - started,
      logins: logins.length,
      missedMean: missed.rows[0]?.mean ?? null,
    };
  } finally {
    await runShutdownSteps(shutdown, log);
    await deleteKeysWithPrefix(queueRedis, prefix).catch(() => undefined);
    queueRedis.disconnect();
    cacheRedis.disconnect();
    if (!options.keepSchemas) await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`).catch(() => undefined);
    await pool.end();
  }
}

async function waitForRun(runs: ReturnType<typeof createRunStore>, runId: number): Promise<void> {
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    const run = await runs.get(runId);
    if (run && (run.status === 'completed' || run.status === 'failed')) return;
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}
