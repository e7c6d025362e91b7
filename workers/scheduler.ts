// Process entry point of the scheduler: `prewarm scheduler`, or `node --import tsx workers/scheduler.ts`.
// Run one per machine or several for availability: each window occurrence is claimed once in
// Postgres, so replicas never plan it twice.
import { pathToFileURL } from 'node:url';
import { systemClock, type Clock } from '../src/clock.ts';
import { loadConfig, redactUrl, type Config } from '../src/config.ts';
import { createPool } from '../src/db/pool.ts';
import { toError } from '../src/errors.ts';
import { closeOnSignal, runShutdownSteps } from '../src/lifecycle.ts';
import { configSecrets, createLogger, type Logger } from '../src/log.ts';
import { closeRedis, createQueueRedis } from '../src/redis.ts';
import { createCronDriver, type CronDriver } from '../src/planner/cron-driver.ts';
import { startMetricsServer, type MetricsServer } from '../src/metrics/server.ts';
import { createSchedulerMetrics } from '../src/planner/metrics.ts';
import { createPlanner } from '../src/planner/planner.ts';
import { createRunStore } from '../src/planner/runs.ts';
import { createScheduler } from '../src/planner/scheduler.ts';
import type { PropensityScorer } from '../src/planner/scorer.ts';
import { createWindowStore } from '../src/planner/windows.ts';
import { createPlanShardQueue, createPrecomputeQueue } from '../src/precompute/queue.ts';
import { createDefaultScorer } from '../src/propensity/default-scorer.ts';
import { latestModelVersion } from '../src/propensity/model-store.ts';
import { startRetrainSchedule } from '../src/propensity/retrain-schedule.ts';
import { latestQualityByWindow } from '../src/propensity/quality.ts';
import { registerModelQualityGauges } from '../src/propensity/quality-metrics.ts';
import { createModelMonitor } from '../src/propensity/quality-monitor.ts';
import { createPartitionMaintenance, startMaintenanceSchedule } from '../src/maintenance/partitions.ts';
import { checkPostgres, checkRedis } from '../src/startup-checks.ts';

export interface SchedulerProcessOptions {
  config: Readonly<Config>;
  log: Logger;
  clock?: Clock;
  /** Default: the newest trained propensity model, the recency rule until one exists. */
  scorer?: PropensityScorer;
  /** Default 15 000 ms, or the sweep interval when that is shorter (the sweep runs in the reload cycle). */
  reloadIntervalMs?: number;
  /** How often running runs are swept for lost or failed chunks. Default PREWARM_SWEEP_INTERVAL (60 s). */
  sweepIntervalMs?: number;
}

export interface SchedulerProcess {
  driver: CronDriver;
  /** Where `/metrics` is served (PREWARM_METRICS_PORT); undefined when it is unset. */
  metricsUrl: string | undefined;
  /** Stop the cron tasks (waiting for a plan in progress) → /metrics server → queue → Redis → Postgres. Idempotent. */
  close(): Promise<void>;
}

export async function startSchedulerProcess(options: SchedulerProcessOptions): Promise<SchedulerProcess> {
  const { config, log } = options;
  const clock = options.clock ?? systemClock;
  const pool = createPool({ databaseUrl: config.databaseUrl, schema: config.dbSchema, max: config.dbPoolSize, applicationName: 'prewarm-scheduler', log });
  const redis = createQueueRedis(config.redisUrl, log);
  const queue = createPrecomputeQueue({ connection: redis, prefix: config.queuePrefix, log });
  // PREWARM_PLAN_SHARDS > 0: runs are scored by `prewarm worker` processes, this one only merges.
  const shardQueue = config.planShards > 0 ? createPlanShardQueue({ connection: redis, prefix: config.queuePrefix, log }) : undefined;
  const windows = createWindowStore({ pool, clock });
  const metrics = createSchedulerMetrics({ clock, log, queue, latestModel: () => latestModelVersion(pool), lastRuns: () => createRunStore({ pool }).lastOutcomes() });
  registerModelQualityGauges(metrics.registry, { read: () => latestQualityByWindow(pool), log });
  let metricsServer: MetricsServer | undefined;
  const planner = metrics.observePlanner(
    createPlanner({
      pool,
      queue,
      scorer: options.scorer ?? createDefaultScorer({ pool, log }),
      clock,
      log,
      itemsPerUser: config.maxLimit,
      unselectedSample: config.planPredictionSample,
      ...(shardQueue ? { shardQueue, shards: config.planShards } : {}),
    }),
  );
  const scheduler = createScheduler({ windows, planner, runs: createRunStore({ pool }), clock, log });
  const sweepIntervalMs = options.sweepIntervalMs ?? config.sweepIntervalMs;
  const driver = createCronDriver({
    scheduler,
    windows,
    planner,
    clock,
    log,
    sweepIntervalMs,
    reloadIntervalMs: options.reloadIntervalMs ?? Math.min(15_000, sweepIntervalMs),
  });
  let stopRetraining: (() => Promise<void>) | undefined;
  let stopMaintenance: (() => Promise<void>) | undefined;
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= runShutdownSteps(
      [
        ['cron', () => driver.close()],
        ['propensity retraining', () => stopRetraining?.()],
        ['partition maintenance', () => stopMaintenance?.()],
        ['metrics server', () => metricsServer?.close()],
        ['plan-shard queue', () => shardQueue?.close()],
        ['queue', () => queue.close()],
        ['redis', () => closeRedis(redis)],
        ['postgres', () => pool.end()],
      ],
      log,
    ));
  try {
    await checkPostgres(pool, { databaseUrl: config.databaseUrl, schema: config.dbSchema });
    await checkRedis(redis, config.redisUrl);
    if (config.metricsPort !== undefined) {
      metricsServer = await startMetricsServer({ registry: metrics.registry, host: config.host, port: config.metricsPort, adminToken: config.adminToken, log });
    }
    stopRetraining = startRetrainSchedule({ pool, log, clock, windowMs: config.propensityWindowMs, maxAgeMs: config.propensityRetrainEveryMs,
      monitor: createModelMonitor({ pool, log, clock, driftMargin: config.propensityDriftMargin, challenger: config.propensityChallenger }),
    });
    stopMaintenance = startMaintenanceSchedule({ maintenance: metrics.observeMaintenance(createPartitionMaintenance({ pool, clock, log, retentionMs: config.retentionMs })), log });
    await driver.start();
  } catch (error) {
    await close();
    throw error;
  }
  log.info(
    { redis: redactUrl(config.redisUrl), prefix: config.queuePrefix, windows: driver.scheduled(), metrics: metricsServer?.url, planShards: config.planShards || 'in process' },
    'scheduler started',
  );
  return { driver, metricsUrl: metricsServer?.url, close };
}

/** Runs the scheduler until SIGTERM or SIGINT; forced exit after PREWARM_SHUTDOWN_TIMEOUT_MS. */
export async function runScheduler(overrides: Partial<SchedulerProcessOptions> = {}): Promise<void> {
  const config = overrides.config ?? loadConfig();
  const log = overrides.log ?? createLogger({ level: config.logLevel, name: 'prewarm-scheduler', secrets: configSecrets(config) });
  const running = await startSchedulerProcess({ ...overrides, config, log });
  await closeOnSignal({ close: running.close, log, timeoutMs: config.shutdownTimeoutMs, name: 'scheduler' });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runScheduler().catch((error: unknown) => {
    process.stderr.write(`prewarm scheduler: ${toError(error).message}\n`);
    process.exit(1);
  });
}
