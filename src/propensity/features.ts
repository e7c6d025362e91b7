import { activeWindowsBefore, DAY_MS, DECAY_HALF_LIVES_MS, HOUR_MS, maskBit, S, STATE_SIZE, utcHour, utcWeekday, windowIndex, type StateGrid } from './state.ts';

/**
 * Features of one user for the window starting at `tMs`, read from the activity state only.
 * The state holds logins before `tMs` and nothing else (the caller's guarantee: evaluate folds a
 * window's logins in after reading its features; the scorer rebuilds states that have seen a
 * login at or after `tMs`), so no feature can see the future.
 *
 * Every feature is defined for any window length; those that cannot vary for a given length
 * (the hour of day of a daily window) are constant and get no weight once standardised.
 */
export const FEATURE_NAMES = [
  // Recency, in windows since the latest active window (≥ 1).
  'recency_log',
  'recency_inv',
  // Continuous recency: hours since the latest login (finer than windows on fine-grained logs).
  'recency_hours_log',
  'recency_hours_inv',
  // Active in the window k windows before this one.
  'lag_1',
  'lag_2',
  'lag_3',
  'lag_4',
  'lag_5',
  'lag_6',
  'lag_7',
  // Same time one day and one to four weeks before (when inside the 64-window mask).
  'lag_day_1',
  'lag_week_1',
  'lag_week_2',
  'lag_week_3',
  'lag_week_4',
  // Share of active windows among the last n windows.
  'active_share_3',
  'active_share_7',
  'active_share_14',
  'active_share_28',
  'active_share_63',
  // Exponentially decayed login counts (half-lives 1, 3, 7, 28 days), log1p.
  'decayed_1d',
  'decayed_3d',
  'decayed_7d',
  'decayed_28d',
  // Trend: weekly rate over monthly rate, log.
  'trend_7d_28d',
  'trend_1d_7d',
  // Volume and tenure.
  'logins_log',
  'active_windows_log',
  'logins_per_active_window_log',
  'last_window_logins_log',
  'tenure_log',
  // Regularity: share of windows since the first login with activity.
  'regularity',
  // Periodic habits: share of (decayed) logins on this window's weekday / hours, ×7 / ×24/h.
  'weekday_share',
  'hour_share',
  // Gaps between active windows: typical gap, latest gap, recency over typical gap (hazard-like).
  'gap_mean_log',
  'gap_last_log',
  'gap_overdue_log',
  // Longest gap so far, and recency over it: has this user come back after this long before?
  'gap_max_log',
  'gap_max_overdue_log',
  'has_gap',
  // Population: share of known users active 1 window, 1 day and 1 week before (logit).
  'population_lag_1',
  'population_lag_day',
  'population_lag_week',
  // Cohort (users whose first login fell in the same 14-day period): share active 1 window and
  // 1 week before, mean share active over the last week (logit), and its size. Users who joined
  // together tend to share a calendar (a course's deadlines, a campaign).
  'cohort_lag_1',
  'cohort_lag_week',
  'cohort_share_week',
  'cohort_size_log',
  // Calendar of the window itself.
  'weekday_mon',
  'weekday_tue',
  'weekday_wed',
  'weekday_thu',
  'weekday_fri',
  'weekday_sat',
  'hour_sin',
  'hour_cos',
] as const;
export type FeatureName = (typeof FEATURE_NAMES)[number];
export const FEATURE_COUNT = FEATURE_NAMES.length;
const F = Object.fromEntries(FEATURE_NAMES.map((name, i) => [name, i])) as Record<FeatureName, number>;

/** What every user's features share at one window start; see `populationContext`. */
export interface WindowContext {
  /** Start of the window (an instant on the grid). */
  startMs: number;
  grid: StateGrid;
  /** Share of known users active 1 window, 1 day and 1 week before (NaN: unknown). */
  populationLag1: number;
  populationLagDay: number;
  populationLagWeek: number;
  /** Per cohort (see `cohortOf`): [members, active 1 window before, active 1 week before, Σ share of the last week active]. */
  cohorts: Map<number, Float64Array>;
}

/** Users whose first login falls in the same 14-day period (from the epoch) form a cohort. */
export const COHORT_MS = 14 * DAY_MS;

export function cohortOf(firstLoginMs: number): number {
  return Math.floor(firstLoginMs / COHORT_MS);
}

/** Windows averaged by `cohort_share_week`: a week of windows, at most the mask's 63. */
function weekWindows(windowMs: number): number {
  return Math.max(1, Math.min(LAG_LIMIT, Math.round((7 * DAY_MS) / windowMs)));
}

const LAG_LIMIT = 63;

/** Lag, in windows, of `ms` earlier, if it is a whole number of windows inside the mask; else 0. */
function lagOf(ms: number, windowMs: number): number {
  const lag = ms / windowMs;
  return Number.isInteger(lag) && lag >= 1 && lag <= LAG_LIMIT ? lag : 0;
}

/** Lags used by the population features, per window length. */
export function populationLags(windowMs: number): { lag1: number; day: number; week: number } {
  const day = lagOf(DAY_MS, windowMs) || 1;
  const week = lagOf(7 * DAY_MS, windowMs) || day;
  return { lag1: 1, day, week };
}

/**
 * Population features at `startMs`, from the states of all users (one pass): for each lag L,
 * users active in window t−L over users known at that window's start. Both the offline
 * evaluation and the planner's scorer compute them this way, from states only.
 */
export function populationContext(states: Float64Array, userCount: number, startMs: number, grid: StateGrid): WindowContext {
  const lags = populationLags(grid.windowMs);
  const wanted = [lags.lag1, lags.day, lags.week];
  const current = windowIndex(startMs, grid);
  const active = new Float64Array(3);
  const known = new Float64Array(3);
  const cohorts = new Map<number, Float64Array>();
  const week = weekWindows(grid.windowMs);
  for (let u = 0; u < userCount; u++) {
    const base = u * STATE_SIZE;
    if (!((states[base + S.COUNT] as number) > 0)) continue;
    const first = states[base + S.FIRST] as number;
    if (!(first < startMs)) continue;
    const recency = current - (states[base + S.LAST_WINDOW] as number);
    for (let j = 0; j < 3; j++) {
      const lag = wanted[j] as number;
      if (first < startMs - lag * grid.windowMs) {
        known[j] = (known[j] as number) + 1;
        if (lag >= recency && maskBit(states, base, lag - recency)) active[j] = (active[j] as number) + 1;
      }
    }
    const cohort = cohortOf(first);
    let totals = cohorts.get(cohort);
    if (!totals) cohorts.set(cohort, (totals = new Float64Array(4)));
    totals[0] = (totals[0] as number) + 1;
    totals[1] = (totals[1] as number) + lagActive(states, base, recency, lags.lag1);
    totals[2] = (totals[2] as number) + lagActive(states, base, recency, lags.week);
    totals[3] = (totals[3] as number) + activeWindowsBefore(states, base, current, week) / week;
  }
  const rate = (j: number) => ((known[j] as number) > 0 ? (active[j] as number) / (known[j] as number) : Number.NaN);
  return { startMs, grid, populationLag1: rate(0), populationLagDay: rate(1), populationLagWeek: rate(2), cohorts };
}

/** Windows before a window start that any population or cohort feature looks at. */
export const POPULATION_LOOKBACK_WINDOWS = LAG_LIMIT;

interface CohortCounts {
  /** Members whose first login is before the tally's first window. */
  before: number;
  /** Members by the window of their first login (index: window − fromWindow). */
  joined: Int32Array;
  /** Members with a login in each window. */
  active: Int32Array;
  /** joinedBefore[k]: members whose first login is before window fromWindow + k. */
  joinedBefore?: Float64Array;
}

/**
 * The population's activity as counts by window and cohort: enough to rebuild, exactly, the
 * `WindowContext` that `populationContext` reads from every user's state, without holding those
 * states. Training on a sample of users reads its population and cohort features from here, so
 * they are those of the whole population, as the planner's scorer computes them.
 *
 * Feed every user once (`addUser`) and each window with a login of theirs once (`addActive`),
 * then read `contextAt` for window starts in [fromWindow + POPULATION_LOOKBACK_WINDOWS, toWindow].
 */
export class PopulationCounts {
  readonly grid: StateGrid;
  readonly fromWindow: number;
  readonly toWindow: number;
  #before = 0;
  #joined: Int32Array;
  #activeKnown: Int32Array;
  #cohorts = new Map<number, CohortCounts>();
  #joinedBefore: Float64Array | undefined;

  /** Counts windows fromWindow … toWindow − 1 (grid indexes). */
  constructor(grid: StateGrid, fromWindow: number, toWindow: number) {
    this.grid = grid;
    this.fromWindow = fromWindow;
    this.toWindow = toWindow;
    this.#joined = new Int32Array(Math.max(0, toWindow - fromWindow));
    this.#activeKnown = new Int32Array(this.#joined.length);
  }

  #cohort(firstMs: number): CohortCounts {
    const key = cohortOf(firstMs);
    let counts = this.#cohorts.get(key);
    if (!counts) this.#cohorts.set(key, (counts = { before: 0, joined: new Int32Array(this.#joined.length), active: new Int32Array(this.#joined.length) }));
    return counts;
  }

  /** A user whose first login is at `firstMs`. */
  addUser(firstMs: number): void {
    const k = windowIndex(firstMs, this.grid) - this.fromWindow;
    if (k >= this.#joined.length) return;
    const cohort = this.#cohort(firstMs);
    if (k < 0) {
      this.#before++;
      cohort.before++;
    } else {
      this.#joined[k] = (this.#joined[k] as number) + 1;
      cohort.joined[k] = (cohort.joined[k] as number) + 1;
    }
    this.#joinedBefore = undefined;
    cohort.joinedBefore = undefined;
  }

  /** The user whose first login is at `firstMs` logged in during window `window` (once per window). */
  addActive(firstMs: number, window: number): void {
    const k = window - this.fromWindow;
    if (k < 0 || k >= this.#joined.length) return;
    const cohort = this.#cohort(firstMs);
    cohort.active[k] = (cohort.active[k] as number) + 1;
    if (windowIndex(firstMs, this.grid) < window) this.#activeKnown[k] = (this.#activeKnown[k] as number) + 1;
  }

  /** One user's logins, ascending: `addUser` and `addActive` for each of their windows. */
  addLogins(times: Float64Array, count: number): void {
    if (count === 0) return;
    const firstMs = times[0] as number;
    this.addUser(firstMs);
    let previous = Number.NaN;
    for (let i = 0; i < count; i++) {
      const window = windowIndex(times[i] as number, this.grid);
      if (window !== previous) this.addActive(firstMs, window);
      previous = window;
    }
  }

  /** The context `populationContext` would compute at `startMs` from every user's state. */
  contextAt(startMs: number): WindowContext {
    const grid = this.grid;
    const current = windowIndex(startMs, grid);
    const k = current - this.fromWindow;
    if (k < POPULATION_LOOKBACK_WINDOWS || k > this.#joined.length) {
      throw new RangeError(`population counts cover windows ${this.fromWindow}…${this.toWindow - 1}: no context for window ${current}`);
    }
    const joinedBefore = (this.#joinedBefore ??= prefixSums(this.#joined, this.#before));
    const lags = populationLags(grid.windowMs);
    // Users known at window t − L (first login before its start) and active in it.
    const rate = (lag: number) => {
      const known = joinedBefore[k - lag] as number;
      return known > 0 ? (this.#activeKnown[k - lag] as number) / known : Number.NaN;
    };
    const week = weekWindows(grid.windowMs);
    const cohorts = new Map<number, Float64Array>();
    for (const [key, counts] of this.#cohorts) {
      const members = (counts.joinedBefore ??= prefixSums(counts.joined, counts.before))[k] as number;
      if (members === 0) continue;
      let activeWindows = 0;
      for (let lag = 1; lag <= week; lag++) activeWindows += counts.active[k - lag] as number;
      cohorts.set(key, Float64Array.of(members, counts.active[k - lags.lag1] as number, counts.active[k - lags.week] as number, activeWindows / week));
    }
    return { startMs, grid, populationLag1: rate(lags.lag1), populationLagDay: rate(lags.day), populationLagWeek: rate(lags.week), cohorts };
  }
}

/** sums[k] = base + Σ values[0 … k−1]. */
function prefixSums(values: Int32Array, base: number): Float64Array {
  const sums = new Float64Array(values.length + 1);
  sums[0] = base;
  for (let i = 0; i < values.length; i++) sums[i + 1] = (sums[i] as number) + (values[i] as number);
  return sums;
}

function logit(p: number): number {
  // Without history (the first windows of a log) the population rate is unknown: a neutral 5%.
  const q = Number.isFinite(p) ? Math.min(Math.max(p, 1e-4), 1 - 1e-4) : 0.05;
  return Math.log(q / (1 - q));
}

/**
 * Writes the FEATURE_COUNT features of the state at `states[base…]`, for the window of
 * `context`, into `out[outBase…]`. The user must be known (a login before the window).
 */
export function featuresAt(states: Float64Array, base: number, context: WindowContext, out: Float64Array | Float32Array, outBase = 0): void {
  const { startMs, grid } = context;
  const windowMs = grid.windowMs;
  const current = windowIndex(startMs, grid);
  const last = states[base + S.LAST] as number;
  const lastWindow = states[base + S.LAST_WINDOW] as number;
  const recency = Math.max(1, current - lastWindow);
  const o = outBase;

  out[o + F.recency_log] = Math.log(recency);
  out[o + F.recency_inv] = 1 / recency;
  const hours = Math.max(0, startMs - last) / HOUR_MS;
  out[o + F.recency_hours_log] = Math.log1p(hours);
  out[o + F.recency_hours_inv] = 1 / (1 + hours);
  for (let lag = 1; lag <= 7; lag++) out[o + F.lag_1 + lag - 1] = lagActive(states, base, recency, lag);
  out[o + F.lag_day_1] = lagActive(states, base, recency, lagOf(DAY_MS, windowMs));
  for (let w = 1; w <= 4; w++) out[o + F.lag_week_1 + w - 1] = lagActive(states, base, recency, lagOf(w * 7 * DAY_MS, windowMs));
  for (let i = 0; i < ACTIVE_SHARE_WINDOWS.length; i++) {
    const n = ACTIVE_SHARE_WINDOWS[i] as number;
    out[o + F.active_share_3 + i] = activeWindowsBefore(states, base, current, n) / n;
  }

  const dt = Math.max(0, startMs - last);
  // Scratch (no allocation per row: training reads millions of rows).
  const rates = DECAYED_RATES;
  for (let h = 0; h < DECAY_HALF_LIVES_MS.length; h++) {
    const halfLife = DECAY_HALF_LIVES_MS[h] as number;
    const value = (states[base + S.DECAY + h] as number) * Math.pow(2, -dt / halfLife);
    out[o + F.decayed_1d + h] = Math.log1p(value);
    // A steady rate of r logins a day keeps the counter near r·halfLife/ln 2.
    rates[h] = (value * Math.LN2 * DAY_MS) / halfLife;
  }
  out[o + F.trend_7d_28d] = Math.log(((rates[2] as number) + 0.01) / ((rates[3] as number) + 0.01));
  out[o + F.trend_1d_7d] = Math.log(((rates[0] as number) + 0.01) / ((rates[2] as number) + 0.01));

  const count = states[base + S.COUNT] as number;
  const activeWindows = states[base + S.WINDOWS] as number;
  out[o + F.logins_log] = Math.log1p(count);
  out[o + F.active_windows_log] = Math.log1p(activeWindows);
  out[o + F.logins_per_active_window_log] = Math.log(count / Math.max(1, activeWindows));
  out[o + F.last_window_logins_log] = Math.log1p(states[base + S.LAST_WINDOW_COUNT] as number);
  const tenure = Math.max(1, current - windowIndex(states[base + S.FIRST] as number, grid));
  out[o + F.tenure_log] = Math.log(tenure);
  out[o + F.regularity] = Math.min(1, activeWindows / tenure);

  // Periodic habits, shrunk towards "no preference" by one pseudo-login.
  const weekday = utcWeekday(startMs);
  let weekTotal = 0;
  for (let d = 0; d < 7; d++) weekTotal += states[base + S.WEEKDAY + d] as number;
  let weekdayMass = 0;
  let hourMass = 0;
  let hourTotal = 0;
  for (let h = 0; h < 24; h++) hourTotal += states[base + S.HOUR + h] as number;
  const windowHours = Math.min(24, Math.max(1, Math.round(windowMs / HOUR_MS)));
  const firstHour = utcHour(startMs);
  for (let k = 0; k < windowHours; k++) hourMass += states[base + S.HOUR + ((firstHour + k) % 24)] as number;
  weekdayMass = states[base + S.WEEKDAY + weekday] as number;
  out[o + F.weekday_share] = (7 * (weekdayMass + 1 / 7)) / (weekTotal + 1);
  out[o + F.hour_share] = ((24 / windowHours) * (hourMass + windowHours / 24)) / (hourTotal + 1);

  const gapMean = states[base + S.GAP_MEAN] as number;
  const gapLast = states[base + S.GAP_LAST] as number;
  out[o + F.gap_mean_log] = Math.log1p(gapMean);
  out[o + F.gap_last_log] = Math.log1p(gapLast);
  out[o + F.gap_overdue_log] = gapMean > 0 ? Math.log(recency / gapMean) : 0;
  out[o + F.has_gap] = gapMean > 0 ? 1 : 0;
  const gapMax = states[base + S.GAP_MAX] as number;
  out[o + F.gap_max_log] = Math.log1p(gapMax);
  out[o + F.gap_max_overdue_log] = gapMax > 0 ? Math.log(recency / gapMax) : 0;

  out[o + F.population_lag_1] = logit(context.populationLag1);
  out[o + F.population_lag_day] = logit(context.populationLagDay);
  out[o + F.population_lag_week] = logit(context.populationLagWeek);
  const cohort = context.cohorts.get(cohortOf(states[base + S.FIRST] as number));
  // Shrunk towards one half-active pseudo-member, so that a cohort of one is not 0% or 100%.
  const members = cohort ? (cohort[0] as number) : 0;
  out[o + F.cohort_lag_1] = cohortShare(cohort, members, 1);
  out[o + F.cohort_lag_week] = cohortShare(cohort, members, 2);
  out[o + F.cohort_share_week] = cohortShare(cohort, members, 3);
  out[o + F.cohort_size_log] = Math.log1p(members);

  for (let d = 1; d <= 6; d++) out[o + F.weekday_mon + d - 1] = weekday === d ? 1 : 0;
  const middleHour = ((startMs + windowMs / 2) % DAY_MS) / HOUR_MS;
  out[o + F.hour_sin] = windowMs >= DAY_MS ? 0 : Math.sin((2 * Math.PI * middleHour) / 24);
  out[o + F.hour_cos] = windowMs >= DAY_MS ? 0 : Math.cos((2 * Math.PI * middleHour) / 24);
}

/** Logit of a cohort total (1: active 1 window before, 2: 1 week before, 3: share of the last week) over its members. */
function cohortShare(cohort: Float64Array | undefined, members: number, k: number): number {
  return logit(((cohort ? (cohort[k] as number) : 0) + 0.5) / (members + 1));
}

const ACTIVE_SHARE_WINDOWS = [3, 7, 14, 28, 63] as const;
const DECAYED_RATES = new Float64Array(DECAY_HALF_LIVES_MS.length);

function lagActive(states: Float64Array, base: number, recency: number, lag: number): number {
  if (lag < 1 || lag < recency) return 0;
  return maskBit(states, base, lag - recency) ? 1 : 0;
}

/**
 * Features of every known user (0 … knownCount−1) at `startMs`, row-major into `out`
 * (grown when too small); returns the rows and the window context they were computed with.
 * The population and cohort features come from `population` when given (the whole population's
 * context, when `states` hold only a sample of it), else from `states`.
 */
export function featureRowsAt(
  states: Float64Array,
  knownCount: number,
  startMs: number,
  grid: StateGrid,
  out?: Float64Array,
  population?: WindowContext,
): { rows: Float64Array; context: WindowContext } {
  const context = population ?? populationContext(states, knownCount, startMs, grid);
  const rows = out && out.length >= knownCount * FEATURE_COUNT ? out : new Float64Array(Math.max(1, knownCount) * FEATURE_COUNT);
  for (let u = 0; u < knownCount; u++) featuresAt(states, u * STATE_SIZE, context, rows, u * FEATURE_COUNT);
  return { rows, context };
}
