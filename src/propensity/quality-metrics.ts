import { Gauge, type Registry } from 'prom-client';
import type { Logger } from '../log.ts';
import { createScrapeCache } from '../metrics/scrape-cache.ts';
import type { RunQuality } from './quality.ts';

export interface ModelQualityGaugeOptions {
  /** Each window's latest evaluated run (latestQualityByWindow), read at scrape. */
  read: () => Promise<readonly RunQuality[]>;
  log: Logger;
  /** Figures change once per ended run: a read is reused for this long. Default 60 s. */
  maxAgeMs?: number;
}

/**
 * `prewarm_model_live_*` gauges on the scheduler's /metrics: each window's latest run whose
 * horizon ended, as `model_quality_by_run` has it (weighted AP, ROC AUC, calibration error,
 * coverage, waste, holdout miss rate), the model's own held-out figures beside them, and whether
 * it drifted. A failed read keeps the previous figures; an undefined figure has no series.
 */
export function registerModelQualityGauges(registry: Registry, options: ModelQualityGaugeOptions): void {
  const runs = createScrapeCache(options.read, { maxAgeMs: options.maxAgeMs ?? 60_000, log: options.log, what: 'live model quality' });
  const gauge = (name: string, help: string, value: (run: RunQuality) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ['window'] as const,
      registers: [registry],
      async collect() {
        const latest = await runs();
        if (latest === undefined) return;
        this.reset();
        for (const run of latest) {
          const v = value(run);
          if (v !== null && Number.isFinite(v)) this.set({ window: run.window }, v);
        }
      },
    });
  gauge('prewarm_model_live_average_precision', 'Average precision of the scores the window\'s latest ended run used, against its logins (weighted by the predictions sample)', (run) => run.averagePrecision);
  gauge('prewarm_model_live_roc_auc', 'ROC AUC of the window\'s latest ended run (weighted)', (run) => run.rocAuc);
  gauge('prewarm_model_live_calibration_error', 'Expected calibration error over weighted deciles of the window\'s latest ended run', (run) => run.calibrationError);
  gauge('prewarm_model_live_coverage_ratio', 'Realized coverage of the window\'s latest ended run (coverage_by_run)', (run) => run.coverage);
  gauge('prewarm_model_live_waste_ratio', 'Realized waste of the window\'s latest ended run (waste_by_run)', (run) => run.waste);
  gauge('prewarm_model_live_holdout_miss_ratio', 'Share of the window\'s latest ended run\'s holdout users who logged in (misses among the unselected)', (run) => run.holdoutMissRate);
  gauge('prewarm_model_live_trained_average_precision', 'Average precision the model of the window\'s latest ended run measured on its held-out week at training', (run) => run.trainedAveragePrecision);
  gauge('prewarm_model_live_drift', '1 when the window\'s latest ended run drifted below its model\'s training figures by more than PREWARM_PROPENSITY_DRIFT_MARGIN', (run) => (run.drifted ? 1 : 0));
}
