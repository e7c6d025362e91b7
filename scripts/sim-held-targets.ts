/**
 * Fast iteration on the feedback controller (issue 14): `evaluate --online` spends its time
 * retraining, not selecting. This script walks a log once as `evaluate --online` does (model
 * retrained on the clock, cold start's recency rule before the first model) and caches every
 * test window's calibrated scores and labels; then it replays controller and policy variants on
 * the cache in seconds.
 *
 *   npx tsx scripts/sim-held-targets.ts cache --logins FILE --test-from DAY [--test-to DAY] [--retrain-every 7d] --out FILE.bin
 *   npx tsx scripts/sim-held-targets.ts simulate --cache FILE.bin [--target 0.8] [--json]
 *
 * The simulation selects through the planner's own code (`selectUsers`, `createController`), so
 * what it reports for `current` is what `evaluate --online` reports; other variants are what a
 * change to the controller would give on the same scores.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseDuration } from '../src/duration.ts';
import { createController, DEFAULT_FEEDBACK, EXPECTED_FEEDBACK, nextTarget, scaleMap, type FeedbackSettings, type ScaleMaps } from '../src/planner/feedback.ts';
import { scaleMapsOnDays, type ScoredDay } from '../src/planner/score-histogram.ts';
import { byPropensity, selectUsers, type Candidate, type Policy } from '../src/planner/policy.ts';
import { bestRecencyRule, knownUsersAt } from '../src/propensity/evaluate.ts';
import { FEATURE_COUNT, featureRowsAt } from '../src/propensity/features.ts';
import { readLoginLog } from '../src/propensity/login-log.ts';
import { pointAtCoverage, thresholdCurve } from '../src/propensity/metrics.ts';
import { modelProbabilities, modelProbability, type PropensityModel } from '../src/propensity/model.ts';
import { trainOrCold } from '../src/propensity/online.ts';
import { defaultTrainWindows, logExtent } from '../src/propensity/periods.ts';
import { S, STATE_SIZE, type StateGrid } from '../src/propensity/state.ts';
import { walkWindows } from '../src/propensity/walk.ts';

interface CachedWindow {
  startMs: number;
  n: number;
  /** The cold start's recency rule (K), or 0 when the model scored the window. */
  coldK: number;
  scores: Float32Array;
  labels: Uint8Array;
  /** ceil((start − last login) / W): recent:K selects the users with at most K. */
  since: Uint16Array;
  /** The model that scored the window (its retraining's ordinal; 0 in a cold start). */
  model: number;
  /** The same users scored by the earlier models of the last POOL_SPAN windows (for the scale maps). */
  alt: { model: number; scores: Float32Array }[];
  /** The same users scored by the LATER models trained within BACK_SPAN windows after it (maps on the pooled runs' own days). */
  back: { model: number; scores: Float32Array }[];
}

/** Windows back that a newly trained model re-scores (their feature rows are kept that long). */
const BACK_SPAN = 28;

/** Windows back whose models also score each window (the largest pool a variant uses). */
const POOL_SPAN = 56;

async function cache(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { logins: { type: 'string' }, 'test-from': { type: 'string' }, 'test-to': { type: 'string' }, 'retrain-every': { type: 'string', default: '7d' }, window: { type: 'string', default: '1d' }, out: { type: 'string' } } });
  const windowMs = parseDuration(values.window as string);
  const retrainEveryMs = parseDuration(values['retrain-every'] as string);
  const { log } = await readLoginLog(values.logins as string);
  const grid: StateGrid = { windowMs, phaseMs: 0 };
  const testFromMs = Date.parse(values['test-from'] as string);
  // --test-to: a shorter walk (a quicker look at a long log; evaluate's default is the log's end).
  const testToMs = values['test-to'] ? Date.parse(values['test-to']) : logExtent(log, grid).toMs;
  const windows: CachedWindow[] = [];
  let model: PropensityModel | undefined;
  let modelNo = 0;
  const models = new Map<number, PropensityModel>();
  let trainedAt = Number.NEGATIVE_INFINITY;
  let coldK = 0;
  let rows: Float64Array = new Float64Array(FEATURE_COUNT);
  const began = Date.now();
  const ring: { w: CachedWindow; rows: Float64Array }[] = [];
  walkWindows(log, grid, testFromMs, testToMs, {
    windowStart: ({ startMs, knownCount, states }) => {
      if (model === undefined || startMs - trainedAt >= retrainEveryMs) {
        const trained = trainOrCold(log, startMs, knownUsersAt(log, startMs), { windowMs, trainWindows: defaultTrainWindows(windowMs) });
        if (trained.kind === 'model') {
          model = trained.model;
          models.set(++modelNo, model);
          trainedAt = startMs;
          coldK = 0;
          for (const { w: v, rows: vRows } of ring) {
            v.back.push({ model: modelNo, scores: modelProbabilities(model, vRows, v.n, new Float32Array(v.n)) });
          }
        } else if (model === undefined) {
          const rule = bestRecencyRule(log, grid, startMs, { kind: 'coverage', target: 0.8 });
          coldK = rule.kind === 'recent' ? rule.k : 28;
        }
      }
      const w: CachedWindow = { startMs, n: knownCount, coldK, scores: new Float32Array(knownCount), labels: new Uint8Array(knownCount), since: new Uint16Array(knownCount), model: coldK === 0 ? modelNo : 0, alt: [], back: [] };
      if (model) ({ rows } = featureRowsAt(states, knownCount, startMs, grid, rows));
      if (model && coldK === 0) {
        const recent = new Set(windows.slice(-POOL_SPAN).map((x) => x.model));
        for (const [no, earlier] of models) {
          if (no === modelNo) continue;
          if (!recent.has(no)) {
            models.delete(no);
            continue;
          }
          w.alt.push({ model: no, scores: modelProbabilities(earlier, rows, knownCount, new Float32Array(knownCount)) });
        }
      }
      for (let u = 0; u < knownCount; u++) {
        if (model) w.scores[u] = modelProbability(model, rows, u * FEATURE_COUNT);
        const last = states[u * STATE_SIZE + S.LAST] as number;
        w.since[u] = Math.min(65_535, Math.ceil((startMs - last) / windowMs));
      }
      windows.push(w);
      if (model && coldK === 0) {
        ring.push({ w, rows: rows.slice(0, knownCount * FEATURE_COUNT) });
        if (ring.length > BACK_SPAN) ring.shift();
      }
    },
    windowEnd: ({ knownCount, activeStamp, index }) => {
      const w = windows[windows.length - 1] as CachedWindow;
      for (let u = 0; u < knownCount; u++) w.labels[u] = activeStamp[u] === index ? 1 : 0;
    },
  });
  const header = { windowMs, windows: windows.map((w) => ({ startMs: w.startMs, n: w.n, coldK: w.coldK, model: w.model, alt: w.alt.map((a) => a.model), back: w.back.map((a) => a.model) })) };
  const parts: Buffer[] = [];
  for (const w of windows) parts.push(Buffer.from(w.scores.buffer), Buffer.from(w.labels.buffer), Buffer.from(w.since.buffer), ...w.alt.map((a) => Buffer.from(a.scores.buffer)), ...w.back.map((a) => Buffer.from(a.scores.buffer)));
  const head = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(head.length);
  writeFileSync(values.out as string, Buffer.concat([len, head, ...parts]));
  console.log(`cached ${windows.length} windows in ${Math.round((Date.now() - began) / 1000)} s`);
}

function load(path: string): { windowMs: number; windows: CachedWindow[] } {
  const buf = readFileSync(path);
  const headLen = buf.readUInt32LE(0);
  const header = JSON.parse(buf.subarray(4, 4 + headLen).toString()) as { windowMs: number; windows: { startMs: number; n: number; coldK: number; model?: number; alt?: number[]; back?: number[] }[] };
  let off = 4 + headLen;
  const take = (bytes: number) => {
    const copy = new Uint8Array(bytes);
    copy.set(buf.subarray(off, off + bytes));
    off += bytes;
    return copy.buffer;
  };
  // Caches written before the scale maps have no models: every window pools as recorded.
  const windows = header.windows.map((h) => ({
    startMs: h.startMs,
    n: h.n,
    coldK: h.coldK,
    scores: new Float32Array(take(h.n * 4)),
    labels: new Uint8Array(take(h.n)),
    since: new Uint16Array(take(h.n * 2)),
    model: h.model ?? 0,
    alt: (h.alt ?? []).map((model) => ({ model, scores: new Float32Array(take(h.n * 4)) })),
    back: (h.back ?? []).map((model) => ({ model, scores: new Float32Array(take(h.n * 4)) })),
  }));
  return { windowMs: header.windowMs, windows };
}

/** A variant chooses each window's selection (indices) from its scores and the outcomes before it. */
type Variant = (target: number) => { select(w: CachedWindow): Int32Array; observe(w: CachedWindow, selected: Int32Array, hits: number, active: number): void };

function candidatesOf(w: CachedWindow): (Candidate & { u: number })[] {
  const out = new Array<Candidate & { u: number }>(w.n);
  for (let u = 0; u < w.n; u++) out[u] = { userId: String(u).padStart(8, '0'), p: w.scores[u] as number, lastLoginAt: 0, u };
  return out;
}

function recentSelection(w: CachedWindow, k: number): Int32Array {
  const out: number[] = [];
  for (let u = 0; u < w.n; u++) if ((w.since[u] as number) <= k) out.push(u);
  return Int32Array.from(out);
}

/** The first controller: per-window `coverage:F'`, F' held from realized coverage (a share of each window's expected logins). */
const share: Variant = (target) => {
  const goal: Policy = { kind: 'coverage', target };
  let current: Policy = goal;
  return {
    select: (w) => Int32Array.from(selectUsers(candidatesOf(w), current, { windowStart: 0, windowMs: 1 }).selected.map((c) => c.u)),
    observe: (_w, _selected, hits, active) => {
      current = { kind: 'coverage', target: nextTarget(target, { applied: (current as { target: number }).target, measured: active > 0 ? hits / active : NaN, evidence: active }) };
    },
  };
};

/**
 * The planner's controller (createController) with `settings`: the held target applied as one
 * threshold on the pooled scores (and logins) of the last `poolRuns` windows. `held()` with the
 * defaults is what `evaluate --online` runs.
 */
const held =
  (overrides: Partial<FeedbackSettings> = {}, base: FeedbackSettings = DEFAULT_FEEDBACK): Variant =>
  (target) => {
    const settings = { ...base, ...overrides };
    const controller = createController({ kind: 'coverage', target }, settings);
    const pooledWindows: CachedWindow[] = [];
    return {
      select: (w) => Int32Array.from(selectUsers(candidatesOf(w), controller.policy(settings.rescaleOn === 'pooled-days' ? pooledMapsOf(w, pooledWindows) : scaleMapsOf(w, controller.pooledModels())), { windowStart: 0, windowMs: 1 }).selected.map((c) => c.u)),
      // The candidates in the order evaluate ranks them (by p, ties by user id), with their logins.
      observe: (w, selected, hits, active) => {
        const ranked = candidatesOf(w).sort(byPropensity);
        controller.observe({ selected: selected.length, hits, activeKnown: active, scores: Float64Array.from(ranked, (c) => c.p), loggedIn: Uint8Array.from(ranked, (c) => w.labels[c.u] as number), candidates: w.n, model: String(w.model) });
        pooledWindows.push(w);
        if (pooledWindows.length > settings.poolRuns) pooledWindows.shift();
      },
    };
  };

/** The maps of the pooled models onto the window's model, as evaluate computes them (the earlier models' scores of this window's users). */
/**
 * The maps of the pooled windows' models onto the serving model's scale, each estimated on the
 * users of the pooled windows that model scored (both models' scores of the same users on those
 * days), rather than on the serving window's users.
 */
function pooledMapsOf(w: CachedWindow, pooled: readonly CachedWindow[]): ScaleMaps {
  const days: ScoredDay[] = [];
  for (const v of pooled) {
    if (v.model === w.model || v.model === 0) continue;
    const later = v.back.find((b) => b.model === w.model);
    if (later) days.push({ model: String(v.model), from: v.scores, to: later.scores });
  }
  return scaleMapsOnDays(days);
}
function scaleMapsOf(w: CachedWindow, pooled: readonly string[]): ScaleMaps {
  const maps = new Map<string, Int32Array>();
  const serving = Float64Array.from(w.scores);
  for (const { model, scores } of w.alt) {
    if (!pooled.includes(String(model))) continue;
    const map = scaleMap(Float64Array.from(scores), serving);
    if (map) maps.set(String(model), map);
  }
  return maps;
}

/** Open loop: `coverage:F,fixed`. */
const fixed: Variant = (target) => ({
  select: (w) => Int32Array.from(selectUsers(candidatesOf(w), { kind: 'coverage', target, fixed: true } as Policy, { windowStart: 0, windowMs: 1 }).selected.map((c) => c.u)),
  observe: () => undefined,
});

function simulate(argv: string[]): void {
  const { values } = parseArgs({ args: argv, options: { cache: { type: 'string' }, target: { type: 'string', default: '0.8' }, json: { type: 'boolean', default: false }, only: { type: 'string' } } });
  const { windows } = load(values.cache as string);
  const target = Number(values.target);
  // The model's own curve: one global threshold over every window the model scored.
  const modelWindows = windows.filter((w) => w.coldK === 0);
  const total = modelWindows.reduce((s, w) => s + w.n, 0);
  const scores = new Float64Array(total);
  const labels = new Uint8Array(total);
  let o = 0;
  for (const w of modelWindows) {
    scores.set(w.scores, o);
    labels.set(w.labels, o);
    o += w.n;
  }
  const curve = thresholdCurve(scores, labels);
  const all: Record<string, Variant> = { fixed, share, ...EXTRA };
  // --only a,b: just the variants named (the recency rules are always reported).
  const only = values.only?.split(',');
  const variants = only ? Object.fromEntries(Object.entries(all).filter(([name]) => only.includes(name))) : all;
  const results: Record<string, unknown>[] = [];
  const rules: { sel: number; hits: number }[] = [];
  let totalActive = 0;
  for (const k of [1, 3, 7, 28]) {
    let sel = 0;
    let hits = 0;
    let active = 0;
    for (const w of windows) {
      const s = recentSelection(w, k);
      sel += s.length;
      for (const u of s) hits += w.labels[u] as number;
      for (let u = 0; u < w.n; u++) active += w.labels[u] as number;
    }
    results.push({ variant: `recent:${k}`, coverage: hits / active, waste: 1 - hits / sel, precomputes: sel });
    rules.push({ sel, hits });
    totalActive = active;
  }
  /**
   * The recency rules' waste at a coverage between two of them: the mixture of the two adjacent
   * rules (a share of windows by each) that reaches it; undefined outside their range.
   */
  const recencyWasteAt = (coverage: number): number | undefined => {
    const want = coverage * totalActive;
    const sorted = [...rules].sort((a, b) => a.hits - b.hits);
    for (let i = 1; i < sorted.length; i++) {
      const a = sorted[i - 1] as { sel: number; hits: number };
      const b = sorted[i] as { sel: number; hits: number };
      if (want < a.hits || want > b.hits) continue;
      const alpha = b.hits > a.hits ? (want - a.hits) / (b.hits - a.hits) : 0;
      return 1 - want / ((1 - alpha) * a.sel + alpha * b.sel);
    }
    return undefined;
  };
  for (const [name, make] of Object.entries(variants)) {
    const v = make(target);
    let sel = 0;
    let hits = 0;
    let active = 0;
    for (const w of windows) {
      const chosen = w.coldK > 0 ? recentSelection(w, w.coldK) : v.select(w);
      let h = 0;
      for (const u of chosen) h += w.labels[u] as number;
      let a = 0;
      for (let u = 0; u < w.n; u++) a += w.labels[u] as number;
      sel += chosen.length;
      hits += h;
      active += a;
      if (w.coldK === 0) v.observe(w, chosen, h, a);
    }
    const coverage = hits / active;
    const own = pointAtCoverage(curve, coverage);
    results.push({ variant: name, cold: windows.filter((w) => w.coldK > 0).length, coverage, waste: 1 - hits / sel, ownWaste: own?.waste, excess: own ? 1 - hits / sel - own.waste : undefined, recencyWaste: recencyWasteAt(coverage), precomputes: sel });
  }
  if (values.json) console.log(JSON.stringify(results, null, 2));
  else for (const r of results) console.log(Object.entries(r).map(([k, v]) => `${k}=${typeof v === 'number' ? (Number.isInteger(v) ? v : v.toFixed(4)) : v}`).join('  '));
}

/**
 * No controller: the threshold at which the last `k` finished windows' own scores and outcomes
 * reach the goal (hits over active known users) — the model's own curve on recent history,
 * applied forward. Logins do not depend on what was precomputed, so this needs no feedback loop.
 */
const recentCurve =
  (k: number): Variant =>
  (target) => {
    const pool: CachedWindow[] = [];
    return {
      select: (w) => {
        if (pool.length === 0) return Int32Array.from(selectUsers(candidatesOf(w), { kind: 'coverage', target }, { windowStart: 0, windowMs: 1 }).selected.map((c) => c.u));
        const pairs: [number, number][] = [];
        let active = 0;
        for (const x of pool) for (let u = 0; u < x.n; u++) {
          pairs.push([x.scores[u] as number, x.labels[u] as number]);
          active += x.labels[u] as number;
        }
        pairs.sort((a, b) => b[0] - a[0]);
        let hits = 0;
        let theta = 0;
        for (const [p, y] of pairs) {
          hits += y;
          theta = p;
          if (hits >= target * active) break;
        }
        const out: number[] = [];
        for (let u = 0; u < w.n; u++) if ((w.scores[u] as number) >= theta) out.push(u);
        return Int32Array.from(out);
      },
      observe: (w) => {
        pool.push(w);
        if (pool.length > k) pool.shift();
      },
    };
  };

const EXTRA: Record<string, Variant> = {
  // The shipped rule (DEFAULT_FEEDBACK): what `evaluate --online` selects.
  shipped: held(),
  // The same with the pooled scores as recorded (the rule before the scale maps).
  asRecorded: held({ rescale: false }),
  recentCurve7: recentCurve(7),
  recentCurve28: recentCurve(28),
  // The threshold from outcomes without the integral, and with other gains, bounds and pools.
  outcomes0: held({ gain: 0 }),
  outcomesGain005: held({ gain: 0.05 }),
  outcomesGain02: held({ gain: 0.2 }),
  outcomesGain05: held({ gain: 0.5, maxStep: 0.05 }),
  outcomesGain03: held({ gain: 0.3, maxStep: 0.05 }),
  outcomesGain02step005: held({ gain: 0.2, maxStep: 0.05 }),
  outcomesOffset005: held({ maxOffset: 0.05 }),
  outcomesOffset02: held({ maxOffset: 0.2 }),
  outcomesOffset003: held({ maxOffset: 0.03 }),
  outcomesOffset008: held({ maxOffset: 0.08 }),
  outcomesOffset005gain02: held({ maxOffset: 0.05, gain: 0.2 }),
  outcomesOffset005gain005: held({ maxOffset: 0.05, gain: 0.05 }),
  outcomesOffset005pool56: held({ maxOffset: 0.05, poolRuns: 56 }),
  outcomesNoAntiWindup: held({ antiWindupShare: 1.01 }),
  outcomesPool14: held({ poolRuns: 14 }),
  outcomesPool56: held({ poolRuns: 56 }),
  outcomesBand005: held({ expectedBand: 0.05 }),
  outcomesBand01: held({ expectedBand: 0.1 }),
  outcomesBand02: held({ expectedBand: 0.2 }),
  outcomes0Band01: held({ expectedBand: 0.1, gain: 0 }),
  outcomes0Band005: held({ expectedBand: 0.05, gain: 0 }),
  // The first held threshold (on Σp, fast integral), with and without anti-wind-up.
  expected28: held({}, EXPECTED_FEEDBACK),
  expected28antiWindup: held({ antiWindupShare: 0.9 }, EXPECTED_FEEDBACK),
  expected28antiWindup05: held({ antiWindupShare: 0.5 }, EXPECTED_FEEDBACK),
  // The pooled threshold on Σp without feedback (gain 0).
  expected28gain0: held({ gain: 0 }, EXPECTED_FEEDBACK),
  // The maps estimated on the pooled days (rescaleOn: 'pooled-days'), with the shipped integral
  // and other gains, bounds and pools.
  pooledDays: held({ rescaleOn: 'pooled-days' }),
  pooledDays0: held({ rescaleOn: 'pooled-days', gain: 0 }),
  pooledDaysGain02: held({ rescaleOn: 'pooled-days', gain: 0.2 }),
  pooledDaysGain03: held({ rescaleOn: 'pooled-days', gain: 0.3, maxStep: 0.05 }),
  pooledDaysOffset003: held({ rescaleOn: 'pooled-days', maxOffset: 0.03 }),
  pooledDaysOffset003gain03: held({ rescaleOn: 'pooled-days', maxOffset: 0.03, gain: 0.3 }),
  pooledDaysOffset01: held({ rescaleOn: 'pooled-days', maxOffset: 0.1 }),
  pooledDaysOffset015gain02: held({ rescaleOn: 'pooled-days', maxOffset: 0.15, gain: 0.2, maxStep: 0.05 }),
  pooledDaysPool14: held({ rescaleOn: 'pooled-days', poolRuns: 14 }),
};

const [command, ...rest] = process.argv.slice(2);
if (command === 'cache') await cache(rest);
else if (command === 'simulate') simulate(rest);
else {
  console.error('usage: sim-held-targets.ts cache|simulate …');
  process.exitCode = 2;
}
