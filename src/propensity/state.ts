/**
 * The per-user activity state from which login-propensity features are read.
 *
 * It is updated once per login (`observeLogin`) and read at any instant after the last login
 * it has seen (`featuresAt` in features.ts), so scoring every user is one pass over the states,
 * never a re-aggregation of their history. A state is a fixed-length run of float64s
 * (`STATE_SIZE` of them) so that a million users fit in one typed array, travel to Postgres as
 * one `bytea` each, and need no allocation per login.
 *
 * Times are epoch milliseconds. Windows ("buckets") form a grid of length `windowMs` starting
 * at `phaseMs` (0 = aligned to UTC midnight, as in the offline protocol), so that "active in the
 * window k windows before t" is an exact bit in a 64-window mask.
 */

export const DAY_MS = 86_400_000;
export const HOUR_MS = 3_600_000;

/** Half-lives of the exponentially decayed login counters. */
export const DECAY_HALF_LIVES_MS = [1 * DAY_MS, 3 * DAY_MS, 7 * DAY_MS, 28 * DAY_MS] as const;
/** Half-life of the weekday and hour-of-day histograms: recent habits count more. */
export const HISTOGRAM_HALF_LIFE_MS = 28 * DAY_MS;
/** Weight of the newest gap in the moving average of gaps between active windows. */
const GAP_SMOOTHING = 0.3;

/** Layout of one state: offsets into its Float64Array. */
export const S = {
  /** Epoch ms of the first login; NaN while the user has none. */
  FIRST: 0,
  /** Epoch ms of the latest login seen; the decayed values below are referenced to it. */
  LAST: 1,
  COUNT: 2,
  /** Distinct windows with at least one login. */
  WINDOWS: 3,
  /** Grid index of the latest active window. */
  LAST_WINDOW: 4,
  /** Bit i: active in window LAST_WINDOW − i (i < 32). */
  MASK_LO: 5,
  /** Bit i: active in window LAST_WINDOW − 32 − i. */
  MASK_HI: 6,
  /** Decayed login counters, one per DECAY_HALF_LIVES_MS, valued at LAST. */
  DECAY: 7,
  /** Moving average of the gap, in windows, between consecutive active windows (0: none yet). */
  GAP_MEAN: 11,
  /** The latest such gap (0: none yet). */
  GAP_LAST: 12,
  /** Logins in the latest active window. */
  LAST_WINDOW_COUNT: 13,
  /** Decayed histogram of logins by UTC weekday (Sunday = 0), valued at LAST. */
  WEEKDAY: 14,
  /** Decayed histogram of logins by UTC hour of day, valued at LAST. */
  HOUR: 21,
  /** Longest gap, in windows, between consecutive active windows (0: none yet). */
  GAP_MAX: 45,
} as const;
export const STATE_SIZE = 46;

/** The grid that defines windows for the activity mask. */
export interface StateGrid {
  windowMs: number;
  /** Offset of the grid from the epoch (windows start at phaseMs + k·windowMs). Default 0. */
  phaseMs?: number;
}

export function windowIndex(atMs: number, grid: StateGrid): number {
  return Math.floor((atMs - (grid.phaseMs ?? 0)) / grid.windowMs);
}

/** A state for a user with no login yet. */
export function createState(): Float64Array {
  const state = new Float64Array(STATE_SIZE);
  resetState(state, 0);
  return state;
}

/** Clears the state at `base` (a user with no login yet). */
export function resetState(buffer: Float64Array, base: number): void {
  buffer.fill(0, base, base + STATE_SIZE);
  buffer[base + S.FIRST] = Number.NaN;
  buffer[base + S.LAST] = Number.NaN;
}

export function hasLogins(buffer: Float64Array, base = 0): boolean {
  return (buffer[base + S.COUNT] as number) > 0;
}

export function utcWeekday(atMs: number): number {
  // 1970-01-01 was a Thursday (weekday 4).
  return (((Math.floor(atMs / DAY_MS) + 4) % 7) + 7) % 7;
}

export function utcHour(atMs: number): number {
  return Math.floor((((atMs % DAY_MS) + DAY_MS) % DAY_MS) / HOUR_MS);
}

/**
 * Folds one login into the state stored at `buffer[base … base + STATE_SIZE)`, in place.
 * Logins should arrive in time order; an older one than the latest seen is still counted
 * exactly in the counters, histograms and mask (decay is linear), only the gap statistics
 * ignore it.
 */
export function observeLogin(buffer: Float64Array, atMs: number, grid: StateGrid, base = 0): void {
  const count = buffer[base + S.COUNT] as number;
  const window = windowIndex(atMs, grid);
  if (count === 0) {
    buffer[base + S.FIRST] = atMs;
    buffer[base + S.LAST] = atMs;
    buffer[base + S.COUNT] = 1;
    buffer[base + S.WINDOWS] = 1;
    buffer[base + S.LAST_WINDOW] = window;
    buffer[base + S.MASK_LO] = 1;
    buffer[base + S.MASK_HI] = 0;
    for (let h = 0; h < DECAY_HALF_LIVES_MS.length; h++) buffer[base + S.DECAY + h] = 1;
    buffer[base + S.LAST_WINDOW_COUNT] = 1;
    buffer[base + S.WEEKDAY + utcWeekday(atMs)] = 1;
    buffer[base + S.HOUR + utcHour(atMs)] = 1;
    return;
  }
  const last = buffer[base + S.LAST] as number;
  buffer[base + S.COUNT] = count + 1;
  if (atMs < (buffer[base + S.FIRST] as number)) buffer[base + S.FIRST] = atMs;

  if (atMs >= last) {
    // Decay everything to the new login, then add it.
    const dt = atMs - last;
    for (let h = 0; h < DECAY_HALF_LIVES_MS.length; h++) {
      buffer[base + S.DECAY + h] = (buffer[base + S.DECAY + h] as number) * Math.pow(2, -dt / (DECAY_HALF_LIVES_MS[h] as number)) + 1;
    }
    if (dt > 0) {
      const f = Math.pow(2, -dt / HISTOGRAM_HALF_LIFE_MS);
      for (let i = 0; i < 7 + 24; i++) buffer[base + S.WEEKDAY + i] = (buffer[base + S.WEEKDAY + i] as number) * f;
    }
    buffer[base + S.LAST] = atMs;
  } else {
    // Late login: its contribution, valued at LAST, is the decayed unit.
    const dt = last - atMs;
    for (let h = 0; h < DECAY_HALF_LIVES_MS.length; h++) {
      buffer[base + S.DECAY + h] = (buffer[base + S.DECAY + h] as number) + Math.pow(2, -dt / (DECAY_HALF_LIVES_MS[h] as number));
    }
  }
  const histogramUnit = atMs >= last ? 1 : Math.pow(2, -(last - atMs) / HISTOGRAM_HALF_LIFE_MS);
  buffer[base + S.WEEKDAY + utcWeekday(atMs)] = (buffer[base + S.WEEKDAY + utcWeekday(atMs)] as number) + histogramUnit;
  buffer[base + S.HOUR + utcHour(atMs)] = (buffer[base + S.HOUR + utcHour(atMs)] as number) + histogramUnit;

  const lastWindow = buffer[base + S.LAST_WINDOW] as number;
  const shift = window - lastWindow;
  if (shift === 0) {
    buffer[base + S.LAST_WINDOW_COUNT] = (buffer[base + S.LAST_WINDOW_COUNT] as number) + 1;
  } else if (shift > 0) {
    shiftMask(buffer, base, shift);
    buffer[base + S.MASK_LO] = ((buffer[base + S.MASK_LO] as number) | 1) >>> 0;
    buffer[base + S.LAST_WINDOW] = window;
    buffer[base + S.WINDOWS] = (buffer[base + S.WINDOWS] as number) + 1;
    buffer[base + S.LAST_WINDOW_COUNT] = 1;
    const meanGap = buffer[base + S.GAP_MEAN] as number;
    buffer[base + S.GAP_MEAN] = meanGap === 0 ? shift : meanGap + GAP_SMOOTHING * (shift - meanGap);
    buffer[base + S.GAP_LAST] = shift;
    if (shift > (buffer[base + S.GAP_MAX] as number)) buffer[base + S.GAP_MAX] = shift;
  } else {
    // A late login in an earlier window: set its bit if it is still inside the mask.
    const bit = -shift;
    if (!maskBit(buffer, base, bit)) {
      buffer[base + S.WINDOWS] = (buffer[base + S.WINDOWS] as number) + 1;
      setMaskBit(buffer, base, bit);
    }
  }
}

/** Shifts the 64-window mask towards older windows by `by` windows. */
function shiftMask(buffer: Float64Array, base: number, by: number): void {
  const lo = buffer[base + S.MASK_LO] as number;
  const hi = buffer[base + S.MASK_HI] as number;
  let newLo: number;
  let newHi: number;
  if (by >= 64) {
    newLo = 0;
    newHi = 0;
  } else if (by >= 32) {
    newLo = 0;
    newHi = by === 32 ? lo : (lo << (by - 32)) >>> 0;
  } else {
    newLo = (lo << by) >>> 0;
    newHi = ((hi << by) | (lo >>> (32 - by))) >>> 0;
  }
  buffer[base + S.MASK_LO] = newLo;
  buffer[base + S.MASK_HI] = newHi;
}

/** Whether bit `i` (window LAST_WINDOW − i) of the mask is set; false beyond 64. */
export function maskBit(buffer: Float64Array, base: number, i: number): boolean {
  if (i < 0 || i >= 64) return false;
  if (i < 32) return (((buffer[base + S.MASK_LO] as number) >>> i) & 1) === 1;
  return (((buffer[base + S.MASK_HI] as number) >>> (i - 32)) & 1) === 1;
}

function setMaskBit(buffer: Float64Array, base: number, i: number): void {
  if (i < 0 || i >= 64) return;
  if (i < 32) buffer[base + S.MASK_LO] = ((buffer[base + S.MASK_LO] as number) | (1 << i)) >>> 0;
  else buffer[base + S.MASK_HI] = ((buffer[base + S.MASK_HI] as number) | (1 << (i - 32))) >>> 0;
}

/**
 * Number of active windows among the `n` windows before the window whose index is `current`
 * (that is windows current−n … current−1), for n ≤ 64 + (current − LAST_WINDOW − 1).
 */
export function activeWindowsBefore(buffer: Float64Array, base: number, current: number, n: number): number {
  const recency = current - (buffer[base + S.LAST_WINDOW] as number);
  // Window current − L is mask bit L − recency.
  const lastBit = n - recency;
  if (lastBit < 0) return 0;
  const upTo = Math.min(lastBit, 63);
  const lo = buffer[base + S.MASK_LO] as number;
  const hi = buffer[base + S.MASK_HI] as number;
  let total = 0;
  if (upTo >= 31) total += popcount(lo);
  else total += popcount(lo & ((1 << (upTo + 1)) - 1));
  if (upTo >= 32) total += upTo >= 63 ? popcount(hi) : popcount(hi & ((1 << (upTo - 31)) - 1));
  return total;
}

function popcount(x: number): number {
  let v = x >>> 0;
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** The state as bytes (for a `bytea` column) and back. */
export function stateToBytes(buffer: Float64Array, base = 0): Buffer {
  return Buffer.from(new Float64Array(buffer.subarray(base, base + STATE_SIZE)).buffer);
}

export function stateFromBytes(bytes: Uint8Array, into: Float64Array = new Float64Array(STATE_SIZE), base = 0): Float64Array {
  if (bytes.byteLength !== STATE_SIZE * 8) throw new RangeError(`activity state has ${bytes.byteLength} bytes, expected ${STATE_SIZE * 8}`);
  const copy = new Uint8Array(bytes); // aligned copy
  into.set(new Float64Array(copy.buffer, 0, STATE_SIZE), base);
  return into;
}
