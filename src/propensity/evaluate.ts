import { formatDuration } from '../duration.ts';
import { PrewarmError } from '../errors.ts';
import { createController, DEFAULT_FEEDBACK, type FeedbackSettings } from '../planner/feedback.ts';
import { byPropensity, formatPolicy, isModelFree, selectUsers, type Candidate, type Policy } from '../planner/policy.ts';
import { reliabilityTable, type ReliabilityBin } from './calibration.ts';
import { FEATURE_COUNT, featureRowsAt } from './features.ts';
import { readLoginLog, type LoginLog, type LoginLogStats } from './login-log.ts';
import { averagePrecision, coverageAtWaste, pointAtCoverage, rocAuc, thresholdCurve, wasteAtCoverage } from './metrics.ts';
import { fitPropensityModel, modelProbability, TrainingSetBuilder, type ModelMetrics, type PropensityModel } from './model.ts';
import { S, STATE_SIZE, type StateGrid } from './state.ts';
import { chooseTrainingUsers, DEFAULT_MAX_TRAINING_ROWS } from './training-sample.ts';
import { HeldScaleMaps, noteApplied, trainOrCold } from './online.ts';
import { defaultTrainWindows, logExtent, trainingPeriod } from './periods.ts';
import { backtestRecencyRules, coldStartRule } from './cold-start.ts';
import { floorToGrid, walkWindows } from './walk.ts';

/** The baseline rules every evaluation prints beside the model (docs/design.md, the offline protocol). */
export const RECENT_RULES = [1, 3, 7, 28] as const;
export const DEFAULT_EVALUATE_POLICY: Policy = { kind: 'coverage', target: 0.8 };

export interface EvaluateOptions {
  /** Window length W; windows start at UTC midnight + k·W. */
  windowMs: number;
  /** First test window start (on the grid). */
  testFromMs: number;
  /** End of the test period (exclusive, on the grid). Default: the end of the last window with a login. */
  testToMs?: number;
  /** The policy reported as `model`. Default `coverage:0.8` on the model's calibrated probabilities. */
  policy?: Policy;
  /** Windows before testFrom the model is trained (and calibrated) on. Default `defaultTrainWindows`. */
  trainWindows?: number;
  /** Of those, the latest held out for calibration. Default a week of windows. */
  calibrationWindows?: number;
  /** Half-life of the training rows' weight by age. Default 28 days. */
  ageHalfLifeMs?: number;
  /**
   * The model is trained on the users with the smallest hash of user_id whose training rows fit
   * in this many (every user when they all fit; see training-sample.ts). Default 2 000 000.
   */
  maxTrainingRows?: number;
  /**
   * The protocol as production runs it (`evaluate --online`): the model retrained every
   * `retrainEveryMs` on the windows before that instant (from the test period's start), coverage
   * and waste targets held by the feedback controller from the outcomes of the windows before,
   * and the best recency rule until there is enough history to train on (cold start).
   */
  online?: { retrainEveryMs: number; feedback?: FeedbackSettings };
}

export { DEFAULT_MAX_TRAINING_ROWS };

/** One line of the evaluation: a policy's totals over the test period. */
export interface PolicyResult {
  name: string;
  /** Σ|S_t| / Σ|known_t|. */
  volume: number;
  /** Σ wasted / Σ|S_t| (0 when nothing was selected). */
  waste: number;
  /** Σ hit / Σ|active known_t|. */
  coverage: number;
  /** Ranking metrics of the model's scores over all test (user, window) pairs. */
  averagePrecision?: number;
  rocAuc?: number;
  /** Waste of the single global score threshold that reaches 80% (90%) coverage. */
  wasteAtCoverage80?: number;
  wasteAtCoverage90?: number;
  /** Highest coverage of a single global score threshold with at most 50% waste. */
  coverageAtWaste50?: number;
  /** Raw counts behind the rates. */
  precomputes: number;
  hits: number;
  wasted: number;
  /** The policy SPEC (`coverage:0.8`, `recent:3`, …), for the rows that are policies. */
  policy?: string;
}

/**
 * "Lower waste than each rule at that rule's own coverage": the model's waste when a single
 * score threshold over all test pairs is lowered until its coverage reaches the rule's.
 */
export interface RuleComparison {
  rule: string;
  coverage: number;
  waste: number;
  modelCoverage: number;
  modelWaste: number;
  modelThreshold: number;
  modelBetter: boolean;
}

export interface EvaluationReport {
  window: string;
  testFrom: string;
  testTo: string;
  knownUserWindows: number;
  activeUserWindows: number;
  policies: PolicyResult[];
  comparisons: RuleComparison[];
  testWindows: number;
  /** `--online`: retraining, cold start and the targets the controller applied. */
  online?: OnlineSummary;
  /** The model that was trained for the evaluation (absent for a model-free --policy); online, the last one. */
  model?: {
    policy: string;
    trainFrom: string;
    trainTo: string;
    trainWindows: number;
    metrics: ModelMetrics;
    /** Calibration of its probabilities over the test period, by decile. */
    testReliability: ReliabilityBin[];
  };
}

export interface OnlineSummary {
  retrainEvery: string;
  /** Models trained over the test period (the first at its start). */
  retrains: number;
  /** Test windows selected by a recency rule because no model could be trained yet. */
  coldStartWindows: number;
  /** The rules a cold start used, and why (the first reason). */
  coldStartRules: string[];
  coldStartReason?: string;
  /** Window start the model took over from the cold start's rule (absent: never or from the start). */
  modelFrom?: string;
  /** The targets the controller held for the `model` policy (coverage or waste): first, last, lowest, highest. */
  appliedTarget?: { first: number; last: number; min: number; max: number };
  /** The score thresholds it applied them as (from the second window it observed): first, last, lowest, highest. */
  appliedThreshold?: { first: number; last: number; min: number; max: number };
}

/** Users known at `ms` (first login before it): users are numbered by first login. */
export function knownUsersAt(log: LoginLog, ms: number): number {
  let known = 0;
  for (let i = 0; i < log.at.length && (log.at[i] as number) < ms; i++) known = Math.max(known, (log.user[i] as number) + 1);
  return known;
}


/** A policy's totals over the test period. */
export interface PolicyTally {
  selected: number;
  hits: number;
  /** Largest |S_t| of any window: what a nightly budget must allow. */
  maxSelected: number;
}

interface EvalCandidate extends Candidate {
  u: number;
}

export interface ProtocolOptions extends Omit<EvaluateOptions, 'policy'> {
  /** Train the model (needed by any model policy and for the ranking metrics). */
  needsModel: boolean;
}

export interface ProtocolResult {
  testFromMs: number;
  testToMs: number;
  testWindows: number;
  knownUserWindows: number;
  activeUserWindows: number;
  tallies: PolicyTally[];
  /** Calibrated probability and label of every test (user, window) pair, when a model ran. */
  scores: Float64Array;
  labels: Uint8Array;
  model?: PropensityModel;
  metrics?: ModelMetrics;
  training?: { fromMs: number; toMs: number };
  online?: OnlineSummary;
}

/**
 * The offline protocol of docs/design.md over an in-memory log, in one pass: states are advanced
 * window by window; the model is fitted on the windows before testFrom (features at each window
 * start, label = active in the window) when the walk reaches testFrom, then every test window is
 * scored at its start from the states (logins before it only), each policy selects through
 * `selectUsers` — the planner's own selection — and its selection is compared with the users
 * active in the window.
 */
export function runOfflineProtocol(log: LoginLog, options: ProtocolOptions, policies: readonly Policy[]): ProtocolResult {
  const grid: StateGrid = { windowMs: options.windowMs, phaseMs: 0 };
  const W = options.windowMs;
  const extent = logExtent(log, grid);
  const testFromMs = options.testFromMs;
  const testToMs = options.testToMs ?? extent.toMs;
  if (floorToGrid(testFromMs, grid) !== testFromMs) {
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--test-from ${new Date(testFromMs).toISOString()} is not the start of a ${formatDuration(W)} window (windows start at UTC midnight + k·${formatDuration(W)})`);
  }
  if (floorToGrid(testToMs, grid) !== testToMs) {
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--test-to ${new Date(testToMs).toISOString()} is not the start of a ${formatDuration(W)} window`);
  }
  if (testToMs <= testFromMs) {
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--test-to ${new Date(testToMs).toISOString()} must be after --test-from ${new Date(testFromMs).toISOString()}`);
  }
  const needsModel = options.needsModel;
  const trainWindows = options.trainWindows ?? defaultTrainWindows(W);
  const online = options.online;
  // Online, the model is trained at test window starts instead (and may not be trainable yet).
  let training = needsModel && !online ? trainingPeriod(log, grid, testFromMs, trainWindows) : undefined;
  const walkFrom = Math.min(training?.fromMs ?? testFromMs, testFromMs);

  const tallies: PolicyTally[] = policies.map(() => ({ selected: 0, hits: 0, maxSelected: 0 }));
  const selections: Int32Array[] = policies.map(() => new Int32Array(0));
  let knownUserWindows = 0;
  let activeUserWindows = 0;
  let testWindows = 0;

  const set = new TrainingSetBuilder();
  // Training rows of a sample of users (all of them when they fit), as train-propensity samples.
  const sample = training ? chooseTrainingUsers(log, grid, training, options.maxTrainingRows ?? DEFAULT_MAX_TRAINING_ROWS) : undefined;
  if (sample) set.reserve(sample.stats.sampledRows);
  let model: PropensityModel | undefined;
  let metrics: ModelMetrics | undefined;
  let rows: Float64Array = new Float64Array(FEATURE_COUNT);
  let scores = new Float64Array(1 << 16);
  let labels = new Uint8Array(1 << 16);
  let scored = 0;
  let windowScoresFrom = 0;
  let trainingOrdinal = 0;
  const inTraining = (startMs: number) => !online && training !== undefined && startMs >= training.fromMs && startMs < training.toMs;
  const controllers = online ? policies.map((policy) => createController(policy, online.feedback)) : undefined;
  const onlineSummary: OnlineSummary | undefined = online ? { retrainEvery: formatDuration(online.retrainEveryMs), retrains: 0, coldStartWindows: 0, coldStartRules: [] } : undefined;
  let trainedAt = Number.NEGATIVE_INFINITY;
  let coldRule: Policy | undefined;
  // Online: the serving model's key (the retraining's ordinal), and the models and windows the
  // controllers pool, for the maps of the pooled scores onto the serving model's scale.
  let modelKey = '';
  const feedback = online?.feedback ?? DEFAULT_FEEDBACK;
  const heldMaps = online ? new HeldScaleMaps(feedback.poolRuns, feedback.rescaleOn) : undefined;
  // The window's scores and users: the controller pools the scores with the users' logins to turn its target into a threshold.
  let ranked = new Float64Array(0);
  let rankedUsers = new Int32Array(0);
  const applied: Policy[] = [...policies];

  /** Online: retrain when due (every window while there is no model yet, as the scheduler retries). */
  const retrainIfDue = (startMs: number, knownCount: number) => {
    if (!online || !onlineSummary || !needsModel) return;
    if (model !== undefined && startMs - trainedAt < online.retrainEveryMs) return;
    const trained = trainOrCold(log, startMs, knownCount, {
      windowMs: W,
      trainWindows,
      calibrationWindows: options.calibrationWindows,
      ageHalfLifeMs: options.ageHalfLifeMs,
      maxTrainingRows: options.maxTrainingRows,
    });
    if (trained.kind === 'model') {
      ({ model, metrics } = trained);
      training = { fromMs: trained.trainFromMs, toMs: trained.trainToMs };
      trainedAt = startMs;
      onlineSummary.retrains++;
      modelKey = String(onlineSummary.retrains);
      heldMaps?.trained(modelKey, trained.model);
      if (coldRule !== undefined) onlineSummary.modelFrom = new Date(startMs).toISOString();
      coldRule = undefined;
    } else if (model === undefined) {
      coldRule = bestRecencyRule(log, grid, startMs, policies.find((policy) => !isModelFree(policy)) as Policy);
      onlineSummary.coldStartReason ??= trained.reason;
    }
  };

  walkWindows(log, grid, walkFrom, testToMs, {
    windowStart: ({ startMs, knownCount, states }) => {
      const inTest = startMs >= testFromMs;
      if (!inTraining(startMs) && !inTest) return;
      if (inTest && online) retrainIfDue(startMs, knownCount);
      if (inTest && needsModel && model === undefined && !online) {
        ({ model, metrics } = fitPropensityModel(set, { windowMs: W, calibrationWindows: options.calibrationWindows, ageHalfLifeMs: options.ageHalfLifeMs }));
        if (sample) metrics.sample = sample.stats;
      }
      if (inTraining(startMs) || (needsModel && model)) ({ rows } = featureRowsAt(states, knownCount, startMs, grid, rows));
      if (!inTest) return;
      // Score every known user, then let each policy choose, exactly as the planner would.
      if (scored + knownCount > scores.length) {
        const capacity = Math.max(scored + knownCount, scores.length * 2);
        const grownScores = new Float64Array(capacity);
        grownScores.set(scores.subarray(0, scored));
        scores = grownScores;
        const grownLabels = new Uint8Array(capacity);
        grownLabels.set(labels.subarray(0, scored));
        labels = grownLabels;
      }
      windowScoresFrom = scored;
      const candidates: EvalCandidate[] = new Array(knownCount);
      for (let u = 0; u < knownCount; u++) {
        const p = model ? modelProbability(model, rows, u * FEATURE_COUNT) : 0;
        candidates[u] = { userId: log.userIds[u] as string, p, lastLoginAt: states[u * STATE_SIZE + S.LAST] as number, u };
        if (model) scores[scored + u] = p;
      }
      if (model) scored += knownCount;
      // selectUsers sorts a copy the same way; sorting an already sorted array is linear.
      candidates.sort(byPropensity);
      if (controllers) {
        ranked = Float64Array.from(candidates, (c) => c.p);
        rankedUsers = Int32Array.from(candidates, (c) => c.u);
      }
      const context = { windowStart: startMs, windowMs: W };
      const maps = heldMaps && model && coldRule === undefined ? heldMaps.maps(modelKey, rows, knownCount, scores.subarray(windowScoresFrom, windowScoresFrom + knownCount)) : undefined;
      policies.forEach((policy, r) => {
        // Online: a model policy without a model yet selects by the cold start's rule; a held
        // target is the one the controller applies now, its pool on this model's scale.
        applied[r] = coldRule !== undefined && !isModelFree(policy) ? coldRule : (controllers?.[r]?.policy(maps) ?? policy);
        const { selected } = selectUsers(candidates, applied[r] as Policy, context);
        const users = new Int32Array(selected.length);
        for (let i = 0; i < selected.length; i++) users[i] = (selected[i] as EvalCandidate).u;
        selections[r] = users;
      });
    },
    windowEnd: ({ startMs, knownCount, activeKnown, activeStamp, index }) => {
      if (inTraining(startMs)) {
        set.append(rows, knownCount, trainingOrdinal++, (u) => activeStamp[u] === index, sample?.keep);
        return;
      }
      if (startMs < testFromMs) return;
      testWindows++;
      knownUserWindows += knownCount;
      activeUserWindows += activeKnown.length;
      if (model) for (let u = 0; u < knownCount; u++) labels[windowScoresFrom + u] = activeStamp[u] === index ? 1 : 0;
      if (onlineSummary && coldRule !== undefined) {
        onlineSummary.coldStartWindows++;
        const rule = formatPolicy(coldRule);
        if (!onlineSummary.coldStartRules.includes(rule)) onlineSummary.coldStartRules.push(rule);
      }
      const loggedIn = controllers ? Uint8Array.from(rankedUsers, (u) => (activeStamp[u] === index ? 1 : 0)) : undefined;
      // The window the controllers pool next (they observe a window a model selected).
      if (heldMaps && model && coldRule === undefined) heldMaps.observed(modelKey, rows, scores.subarray(windowScoresFrom, windowScoresFrom + knownCount), knownCount);
      policies.forEach((policy, r) => {
        const users = selections[r] as Int32Array;
        let hits = 0;
        for (let i = 0; i < users.length; i++) if (activeStamp[users[i] as number] === index) hits++;
        const tally = tallies[r] as PolicyTally;
        tally.selected += users.length;
        tally.hits += hits;
        tally.maxSelected = Math.max(tally.maxSelected, users.length);
        // The controller learns from the windows its target selected (not from a cold start's rule).
        if (controllers && (coldRule === undefined || isModelFree(policy))) {
          if (r === 0 && onlineSummary) noteApplied(onlineSummary, applied[r] as Policy);
          (controllers[r] as ReturnType<typeof createController>).observe({ selected: users.length, hits, activeKnown: activeKnown.length, scores: ranked, loggedIn, candidates: knownCount, model: modelKey });
        }
      });
    },
  });
  return {
    testFromMs,
    testToMs,
    testWindows,
    knownUserWindows,
    activeUserWindows,
    tallies,
    scores: scores.subarray(0, scored),
    labels: labels.subarray(0, scored),
    model,
    metrics,
    training,
    online: onlineSummary,
  };
}


export function ratio(a: number, b: number): number {
  return b > 0 ? a / b : 0;
}

/** A policy's line of the report from its tally. */
export function policyResult(name: string, policy: Policy, tally: PolicyTally, run: Pick<ProtocolResult, 'knownUserWindows' | 'activeUserWindows'>): PolicyResult {
  return {
    name,
    volume: ratio(tally.selected, run.knownUserWindows),
    waste: ratio(tally.selected - tally.hits, tally.selected),
    coverage: ratio(tally.hits, run.activeUserWindows),
    precomputes: tally.selected,
    hits: tally.hits,
    wasted: tally.selected - tally.hits,
    policy: formatPolicy(policy),
  };
}

/** The baselines of protocol step 5, in report order after the model. */
export function baselinePolicies(): { name: string; policy: Policy }[] {
  return [{ name: 'all', policy: { kind: 'all' } }, ...RECENT_RULES.map((k) => ({ name: `recent-${k}`, policy: { kind: 'recent', k } as Policy }))];
}

export function oracleResult(run: Pick<ProtocolResult, 'knownUserWindows' | 'activeUserWindows'>): PolicyResult {
  return {
    name: 'oracle',
    volume: ratio(run.activeUserWindows, run.knownUserWindows),
    waste: 0,
    coverage: run.activeUserWindows > 0 ? 1 : 0,
    precomputes: run.activeUserWindows,
    hits: run.activeUserWindows,
    wasted: 0,
  };
}

/** docs/design.md's offline evaluation: the model's policy beside every baseline. */
export function evaluateLog(log: LoginLog, options: EvaluateOptions): EvaluationReport {
  const policy = options.policy ?? DEFAULT_EVALUATE_POLICY;
  const rules = [{ name: 'model', policy }, ...baselinePolicies()];
  const run = runOfflineProtocol(log, { ...options, needsModel: !isModelFree(policy) }, rules.map((rule) => rule.policy));
  // Online, the baselines stay as they are: they hold no target and need no model.
  const policies: PolicyResult[] = rules.map((rule, r) => policyResult(rule.name, rule.policy, run.tallies[r] as PolicyTally, run));
  policies.push(oracleResult(run));

  const comparisons: RuleComparison[] = [];
  let testReliability: ReliabilityBin[] = [];
  if (run.model && run.scores.length > 0) {
    const curve = thresholdCurve(run.scores, run.labels);
    const modelRow = policies[0] as PolicyResult;
    modelRow.averagePrecision = averagePrecision(curve);
    modelRow.rocAuc = rocAuc(curve);
    modelRow.wasteAtCoverage80 = wasteAtCoverage(curve, 0.8);
    modelRow.wasteAtCoverage90 = wasteAtCoverage(curve, 0.9);
    modelRow.coverageAtWaste50 = coverageAtWaste(curve, 0.5);
    for (const row of policies) {
      if (!row.name.startsWith('recent-')) continue;
      const point = pointAtCoverage(curve, row.coverage);
      if (!point) continue;
      comparisons.push({
        rule: row.name,
        coverage: row.coverage,
        waste: row.waste,
        modelCoverage: point.coverage,
        modelWaste: point.waste,
        modelThreshold: point.threshold,
        modelBetter: point.waste < row.waste,
      });
    }
    testReliability = reliabilityTable(run.scores, run.labels);
  }

  return {
    window: formatDuration(options.windowMs),
    testFrom: new Date(run.testFromMs).toISOString(),
    testTo: new Date(run.testToMs).toISOString(),
    knownUserWindows: run.knownUserWindows,
    activeUserWindows: run.activeUserWindows,
    policies,
    comparisons,
    testWindows: run.testWindows,
    ...(run.online ? { online: run.online } : {}),
    ...(run.model && run.metrics && run.training
      ? {
          model: {
            policy: formatPolicy(policy),
            trainFrom: new Date(run.training.fromMs).toISOString(),
            trainTo: new Date(run.training.toMs).toISOString(),
            trainWindows: Math.round((run.training.toMs - run.training.fromMs) / options.windowMs),
            metrics: run.metrics,
            testReliability,
          },
        }
      : {}),
  };
}

/** Reads the CSV and evaluates it; the log's reading statistics come back with the report. */
export async function evaluateFile(path: string, options: EvaluateOptions): Promise<{ report: EvaluationReport; stats: LoginLogStats }> {
  const { log, stats } = await readLoginLog(path);
  return { report: evaluateLog(log, options), stats };
}

/**
 * Cold start: the recency rule that meets the policy's goal best on the latest windows of history
 * before `atMs` (COLD_START.backtestWindows), by the planner's own backtest (src/propensity/cold-start.ts).
 */
export function bestRecencyRule(log: LoginLog, grid: StateGrid, atMs: number, goal: Policy): Policy {
  const firstLoginMs = new Float64Array(log.userIds.length).fill(Number.POSITIVE_INFINITY);
  let end = 0;
  for (; end < log.at.length && (log.at[end] as number) < atMs; end++) {
    const u = log.user[end] as number;
    if ((firstLoginMs[u] as number) === Number.POSITIVE_INFINITY) firstLoginMs[u] = log.at[end] as number;
  }
  const figures = backtestRecencyRules({ user: log.user.subarray(0, end), at: log.at.subarray(0, end), firstLoginMs }, atMs, grid.windowMs);
  return coldStartRule(goal, figures);
}
