// The weighted figures of live model quality, drift, the retraining age after a monitoring pass,
// and the prewarm_model_live_* gauges as promtool sees them.
import { spawnSync } from 'node:child_process';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { averagePrecision, rocAuc, thresholdCurve, weightedThresholdCurve } from '../src/propensity/metrics.ts';
import { isDrift, weightedQuality, weightedReliability, type RunQuality } from '../src/propensity/quality.ts';
import { registerModelQualityGauges } from '../src/propensity/quality-metrics.ts';
import { retrainMaxAgeMs, type MonitorPass } from '../src/propensity/quality-monitor.ts';
import { silentLog } from './helpers.ts';

function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 4_294_967_296;
  };
}

describe('weighted ranking and calibration figures', () => {
  it('a row of weight k counts as k rows: AP and ROC AUC equal those of the rows repeated', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const random = rng(seed);
      const n = 50 + Math.floor(random() * 200);
      const scores: number[] = [];
      const labels: number[] = [];
      const weights: number[] = [];
      const repeatedScores: number[] = [];
      const repeatedLabels: number[] = [];
      for (let i = 0; i < n; i++) {
        // Coarse scores, so that ties across labels occur.
        const s = Math.round(random() * 20) / 20;
        const y = random() < s * 0.8 ? 1 : 0;
        const w = 1 + Math.floor(random() * 4);
        scores.push(s);
        labels.push(y);
        weights.push(w);
        for (let k = 0; k < w; k++) {
          repeatedScores.push(s);
          repeatedLabels.push(y);
        }
      }
      const weighted = weightedThresholdCurve(scores, labels, weights);
      const repeated = thresholdCurve(repeatedScores, repeatedLabels);
      expect(weighted.positives).toBe(repeated.positives);
      expect(weighted.negatives).toBe(repeated.negatives);
      expect(averagePrecision(weighted)).toBeCloseTo(averagePrecision(repeated), 12);
      expect(rocAuc(weighted)).toBeCloseTo(rocAuc(repeated), 12);
    }
  });

  it('with unit weights it is the unweighted curve', () => {
    const random = rng(99);
    const scores = Array.from({ length: 300 }, () => random());
    const labels = scores.map((s) => (random() < s ? 1 : 0));
    const weighted = weightedThresholdCurve(scores, labels, new Float64Array(300).fill(1));
    const plain = thresholdCurve(scores, labels);
    expect(Array.from(weighted.thresholds)).toEqual(Array.from(plain.thresholds));
    expect(Array.from(weighted.truePositives)).toEqual(Array.from(plain.truePositives));
    expect(averagePrecision(weighted)).toBe(averagePrecision(plain));
  });

  it('refuses NaN scores and negative weights', () => {
    expect(() => weightedThresholdCurve([0.1, Number.NaN], [0, 1], [1, 1])).toThrow(/score is NaN/);
    expect(() => weightedThresholdCurve([0.1, 0.2], [0, 1], [1, -1])).toThrow(/weight is negative/);
  });

  it('weighted deciles hold a tenth of the weight each; a calibrated scoring has no calibration error', () => {
    // 10 groups of 20 rows with p = 0.1, 0.2, …, 1; in each, half the rows weigh 1 and half 3 (rows
    // standing for users left out of the sample), and in both halves the share p logs in.
    const p: number[] = [];
    const labels: number[] = [];
    const weights: number[] = [];
    for (let g = 0; g < 10; g++) {
      for (let i = 0; i < 20; i++) {
        p.push((g + 1) / 10);
        labels.push(Math.floor(i / 2) < g + 1 ? 1 : 0);
        weights.push(i % 2 === 0 ? 1 : 3);
      }
    }
    const table = weightedReliability(p, labels, weights);
    expect(table).toHaveLength(10);
    for (const [g, bin] of table.entries()) {
      expect(bin.count).toBeCloseTo(40, 9);
      expect(bin.meanPredicted).toBeCloseTo((g + 1) / 10, 6);
      expect(bin.observedRate).toBeCloseTo((g + 1) / 10, 9);
    }
    const quality = weightedQuality(p, labels, weights);
    expect(quality.scoredUsers).toBe(400);
    expect(quality.loggedIn).toBe(220);
    expect(quality.calibrationError).toBeCloseTo(0, 6);
  });
});

describe('drift', () => {
  it('is a drop of AP or a rise of calibration error beyond the margin, never on missing figures', () => {
    const trained = { averagePrecision: 0.6, calibrationError: 0.02 };
    expect(isDrift({ averagePrecision: 0.56, calibrationError: 0.05 }, trained, 0.05)).toBe(false);
    expect(isDrift({ averagePrecision: 0.54, calibrationError: 0.02 }, trained, 0.05)).toBe(true);
    expect(isDrift({ averagePrecision: 0.6, calibrationError: 0.08 }, trained, 0.05)).toBe(true);
    expect(isDrift({ averagePrecision: null, calibrationError: null }, trained, 0.05)).toBe(false);
    expect(isDrift({ averagePrecision: 0.1, calibrationError: 0.5 }, { averagePrecision: null, calibrationError: null }, 0.05)).toBe(false);
  });

  it('retrains at once on drift, never while a model younger than the period exists, else on the period', () => {
    const pass = (over: Partial<MonitorPass>): MonitorPass => ({ evaluated: 0, shadowed: 0, retrainNow: false, serving: 'm', newestModelAgeMs: undefined, ...over });
    expect(retrainMaxAgeMs(pass({ retrainNow: true, newestModelAgeMs: 1_000 }), 86_400_000)).toBe(0);
    expect(retrainMaxAgeMs(pass({ newestModelAgeMs: 3_600_000 }), 86_400_000)).toBe(Number.POSITIVE_INFINITY);
    expect(retrainMaxAgeMs(pass({ newestModelAgeMs: 2 * 86_400_000 }), 86_400_000)).toBe(86_400_000);
    expect(retrainMaxAgeMs(pass({}), 86_400_000)).toBe(86_400_000);
  });
});

describe('settings', () => {
  it('PREWARM_PROPENSITY_DRIFT_MARGIN and PREWARM_PROPENSITY_CHALLENGER: defaults, values, clear errors', () => {
    expect(loadConfig({})).toMatchObject({ propensityDriftMargin: 0.05, propensityChallenger: true });
    expect(loadConfig({ PREWARM_PROPENSITY_DRIFT_MARGIN: '0.1', PREWARM_PROPENSITY_CHALLENGER: 'off' })).toMatchObject({ propensityDriftMargin: 0.1, propensityChallenger: false });
    expect(() => loadConfig({ PREWARM_PROPENSITY_DRIFT_MARGIN: '2' })).toThrow(/PREWARM_PROPENSITY_DRIFT_MARGIN/);
    expect(() => loadConfig({ PREWARM_PROPENSITY_DRIFT_MARGIN: 'lots' })).toThrow(/PREWARM_PROPENSITY_DRIFT_MARGIN/);
    expect(() => loadConfig({ PREWARM_PROPENSITY_CHALLENGER: 'yes' })).toThrow(/PREWARM_PROPENSITY_CHALLENGER/);
  });
});

function promtool(): string | undefined {
  const found = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' });
  return found.status === 0 ? found.stdout.trim() : undefined;
}

describe('prewarm_model_live_* gauges', () => {
  const run = (window: string, over: Partial<RunQuality>): RunQuality => ({
    runId: 1,
    window,
    scheduledFor: new Date('2024-01-01T00:00:00Z'),
    expiresAt: new Date('2024-01-02T00:00:00Z'),
    modelVersion: 'propensity-x',
    computedAt: new Date('2024-01-02T00:05:00Z'),
    recordedUsers: 10,
    scoredUsers: 14,
    loggedIn: 4,
    averagePrecision: 0.95,
    rocAuc: 0.975,
    calibrationError: 0.03,
    reliability: [],
    coverage: 0.75,
    waste: 0.25,
    holdoutUsers: 1,
    holdoutLoggedIn: 0,
    holdoutMissRate: 0,
    trainedAveragePrecision: 0.9,
    trainedCalibrationError: 0.02,
    drifted: false,
    ...over,
  });

  it('expose each window\'s latest ended run and pass promtool check metrics', async () => {
    const registry = new Registry();
    registerModelQualityGauges(registry, {
      log: silentLog,
      read: async () => [run('nightly', {}), run('hourly', { averagePrecision: Number.NaN, holdoutMissRate: null, drifted: true })],
    });
    const body = await registry.metrics();
    expect(body).toContain('prewarm_model_live_average_precision{window="nightly"} 0.95');
    expect(body).toContain('prewarm_model_live_roc_auc{window="nightly"} 0.975');
    expect(body).toContain('prewarm_model_live_calibration_error{window="nightly"} 0.03');
    expect(body).toContain('prewarm_model_live_coverage_ratio{window="nightly"} 0.75');
    expect(body).toContain('prewarm_model_live_waste_ratio{window="nightly"} 0.25');
    expect(body).toContain('prewarm_model_live_holdout_miss_ratio{window="nightly"} 0');
    expect(body).toContain('prewarm_model_live_trained_average_precision{window="nightly"} 0.9');
    expect(body).toContain('prewarm_model_live_drift{window="nightly"} 0');
    expect(body).toContain('prewarm_model_live_drift{window="hourly"} 1');
    // An undefined figure has no series.
    expect(body).not.toContain('prewarm_model_live_average_precision{window="hourly"}');
    expect(body).not.toContain('prewarm_model_live_holdout_miss_ratio{window="hourly"}');
    const binary = promtool();
    if (!binary) throw new Error('promtool is not installed: apt-get install -y prometheus (.ci/run does it)');
    const checked = spawnSync(binary, ['check', 'metrics'], { input: body, encoding: 'utf8' });
    expect(`${checked.stdout}${checked.stderr}`).toBe('');
    expect(checked.status).toBe(0);
  });

  it('keep the previous figures when a read fails', async () => {
    const registry = new Registry();
    let fail = false;
    registerModelQualityGauges(registry, {
      log: silentLog,
      maxAgeMs: 0,
      read: async () => {
        if (fail) throw new Error('postgres away');
        return [run('nightly', {})];
      },
    });
    expect(await registry.metrics()).toContain('prewarm_model_live_average_precision{window="nightly"} 0.95');
    fail = true;
    expect(await registry.metrics()).toContain('prewarm_model_live_average_precision{window="nightly"} 0.95');
  });
});
