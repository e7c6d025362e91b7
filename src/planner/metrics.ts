import { performance } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { PartitionMaintenance } from '../maintenance/partitions.ts';
import { registerDefaultMetrics } from '../metrics/default-metrics.ts';
import { registerQueueJobsGauge, type CountableQueue } from '../metrics/queue-jobs.ts';
import { createScrapeCache } from '../metrics/scrape-cache.ts';
import type { Planner } from './planner.ts';
import type { LastRunOutcome } from './runs.ts';

export interface SchedulerMetricsOptions {
  clock: Clock;
  log: Logger;
  /** The precompute queue, whose job counts are read at scrape. */
  queue?: CountableQueue;
  /** The newest trained propensity model, read at scrape (undefined: none trained yet). */
  latestModel?: () => Promise<{ version: string; trainedAt: Date } | undefined>;
  /** Each window's last finished run, read at scrape (at most every `runOutcomesMaxAgeMs`). */
  lastRuns?: () => Promise<readonly LastRunOutcome[]>;
  /** The waste view scans the runs' sets: its figures are reused for this long. Default 5 min. */
  runOutcomesMaxAgeMs?: number;
  defaultMetrics?: boolean;
}

/**
 * Prometheus metrics of one scheduler process, in a registry of its own: runs planned and
 * planning failures and planner duration by window (observed around Planner.planRun), chunks
 * swept, partition maintenance passes, the newest propensity model's version and age, the
 * precompute queue's job counts; Node's default metrics.
 */
export function createSchedulerMetrics(options: SchedulerMetricsOptions) {
  const { clock, log } = options;
  const registry = new Registry();
  if (options.defaultMetrics ?? true) registerDefaultMetrics(registry);
  const runsPlanned = new Counter({
    name: 'prewarm_runs_planned_total',
    help: 'Runs this scheduler planned (scored, selected, chunks enqueued), by window',
    labelNames: ['window'] as const,
    registers: [registry],
  });
  const planningFailures = new Counter({
    name: 'prewarm_run_planning_failures_total',
    help: 'Planning attempts that failed (a later tick retries, up to its limit), by window',
    labelNames: ['window'] as const,
    registers: [registry],
  });
  const plannerDuration = new Histogram({
    name: 'prewarm_planner_duration_seconds',
    help: 'Time to plan a run (claim excluded), successful or not, by window',
    labelNames: ['window'] as const,
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
    registers: [registry],
  });
  const chunksSwept = new Counter({
    name: 'prewarm_chunks_swept_total',
    help: 'Chunks of running runs the sweep re-enqueued (job lost) or recorded as failed (job failed for good, run expired), by action',
    labelNames: ['action'] as const,
    registers: [registry],
  });
  const maintenancePasses = new Counter({
    name: 'prewarm_partition_maintenance_passes_total',
    help: 'Partition maintenance passes by outcome (ok, failed)',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const readModel = options.latestModel;
  let modelError = false;
  const latest = async () => {
    if (!readModel) return undefined;
    try {
      const model = await readModel();
      modelError = false;
      return model;
    } catch (error) {
      if (!modelError) log.warn({ err: error }, 'reading the propensity model for /metrics failed');
      modelError = true;
      return null;
    }
  };
  // Both gauges read the model at scrape; one query serves both (collect runs in registration order).
  let pendingModel: ReturnType<typeof latest> | undefined;
  new Gauge({
    name: 'prewarm_propensity_model_info',
    help: 'The newest trained propensity model, by version (value 1; no series until one is trained)',
    labelNames: ['version'] as const,
    registers: [registry],
    async collect() {
      pendingModel = latest();
      const model = await pendingModel;
      if (model === null) return;
      this.reset();
      if (model) this.set({ version: model.version }, 1);
    },
  });
  new Gauge({
    name: 'prewarm_propensity_model_age_seconds',
    help: 'Age of the newest trained propensity model (NaN until one is trained)',
    registers: [registry],
    async collect() {
      const model = await (pendingModel ?? latest());
      pendingModel = undefined;
      if (model === null) return;
      this.set(model ? Math.max(0, (clock.now().getTime() - model.trainedAt.getTime()) / 1000) : Number.NaN);
    },
  });
  if (options.queue) registerQueueJobsGauge(registry, [options.queue], log);
  if (options.lastRuns) registerLastRunGauges(registry, options.lastRuns, options.runOutcomesMaxAgeMs ?? 300_000, log);

  return {
    registry,
    /** The planner, observed: planRun counted and timed by window, sweep results counted. */
    observePlanner(planner: Planner): Planner {
      return {
        ...planner,
        async planRun(window, scheduledFor) {
          const started = performance.now();
          try {
            const planned = await planner.planRun(window, scheduledFor);
            // Undefined: another replica holds the claim; nothing was planned here.
            if (planned) {
              runsPlanned.inc({ window: window.name });
              plannerDuration.observe({ window: window.name }, (performance.now() - started) / 1000);
            }
            return planned;
          } catch (error) {
            planningFailures.inc({ window: window.name });
            plannerDuration.observe({ window: window.name }, (performance.now() - started) / 1000);
            throw error;
          }
        },
        async sweep() {
          const swept = await planner.sweep();
          if (swept.requeued > 0) chunksSwept.inc({ action: 'requeued' }, swept.requeued);
          if (swept.failed > 0) chunksSwept.inc({ action: 'failed' }, swept.failed);
          return swept;
        },
      };
    },
    /** Partition maintenance, its passes counted by outcome. */
    observeMaintenance(maintenance: PartitionMaintenance): PartitionMaintenance {
      return {
        ...maintenance,
        async run(...args: Parameters<PartitionMaintenance['run']>) {
          try {
            const report = await maintenance.run(...args);
            if (!report.skipped) maintenancePasses.inc({ outcome: 'ok' });
            return report;
          } catch (error) {
            maintenancePasses.inc({ outcome: 'failed' });
            throw error;
          }
        },
      };
    },
  };
}

export type SchedulerMetrics = ReturnType<typeof createSchedulerMetrics>;


/**
 * Gauges of each window's last finished run: outcome, sets precomputed, users failed, sets
 * wasted so far, duration. Read from Postgres at scrape and kept for `maxAgeMs`, since the waste
 * figure comes from a view over the run's sets; a failed read keeps the previous figures.
 */
function registerLastRunGauges(registry: Registry, read: () => Promise<readonly LastRunOutcome[]>, maxAgeMs: number, log: Logger): void {
  const runs = createScrapeCache(read, { maxAgeMs, log, what: 'the last runs' });
  const gauge = (name: string, help: string, value: (run: LastRunOutcome) => number | null, labels: readonly ('window' | 'status')[] = ['window']) =>
    new Gauge({
      name,
      help,
      labelNames: labels,
      registers: [registry],
      async collect() {
        const latest = await runs();
        if (latest === undefined) return;
        this.reset();
        for (const run of latest) {
          const v = value(run);
          if (v !== null) this.set(labels.length === 2 ? { window: run.window, status: run.status } : { window: run.window }, v);
        }
      },
    });
  gauge('prewarm_last_run_info', 'Each window\'s last finished run, by outcome (value 1)', () => 1, ['window', 'status']);
  gauge('prewarm_last_run_precomputed_sets', 'Sets the window\'s last finished run precomputed', (run) => run.precomputed);
  gauge('prewarm_last_run_failed_users', 'Users the window\'s last finished run failed to precompute', (run) => run.failed);
  gauge('prewarm_last_run_wasted_sets', 'Policy sets of the window\'s last finished run that expired unserved so far (the waste view)', (run) => run.wasted);
  gauge('prewarm_last_run_duration_seconds', 'From the occurrence to the last chunk of the window\'s last finished run', (run) => run.durationSeconds);
}
