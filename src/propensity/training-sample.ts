import { PrewarmError } from '../errors.ts';
import { BinaryCopyRowParser } from './copy-rows.ts';
import { POPULATION_LOOKBACK_WINDOWS, PopulationCounts } from './features.ts';
import { LoginLogBuilder, type LoginLog } from './login-log.ts';
import { windowIndex, type StateGrid } from './state.ts';

/**
 * Which users a propensity model is trained on.
 *
 * A training row is one (known user, window) of the training period, so a population of a million
 * users over 26 weeks of daily windows is 180 million rows: far more than a logistic regression
 * with 56 features needs, and more than fits in memory. Training keeps a sample of USERS, every
 * row of each: the users whose hash of `user_id` is smallest, as many as fit in
 * `maxTrainingRows` rows. The sample is
 * - deterministic: the same logins give the same users, whether read from Postgres or a CSV;
 * - uniform: the hash does not depend on behaviour;
 * - stable: as the population grows, the bound only moves down, so consecutive retrainings share
 *   most of their users;
 * - exact when it is not needed: when every user fits, every user is kept and training is what
 *   it was without sampling.
 * Only the sampled users' logins are held in memory and walked; the features that describe the
 * whole population (population and cohort activity) are computed from counts over everybody
 * (`PopulationCounts`), so a sampled user's features are exactly those the planner computes.
 */

export const DEFAULT_MAX_TRAINING_ROWS = 2_000_000;

/** What was sampled, stored with the model (`metrics.sample`). */
export interface TrainingSampleStats {
  /** Users known in at least one window of the training period, and how many were sampled. */
  users: number;
  sampledUsers: number;
  /** Training rows (known user × window) of the period, and how many the sample has. */
  rows: number;
  sampledRows: number;
  /** Logins before the end of the training period, and how many of them (the sampled users') were held in memory. */
  logins: number;
  sampledLogins: number;
  /** The row budget the sample was sized to. */
  maxRows: number;
  /** Users were sampled when hash(user_id) / 2³² < hashBound (1: everybody). */
  hashBound: number;
}

/** The logins a model is trained on: every user's, or a sample's with the population's counts. */
export interface TrainingSample {
  /** The sampled users' logins (everybody's when nobody was left out). */
  log: LoginLog;
  /** Population counts over everybody, present when users were left out. */
  population?: PopulationCounts;
  stats: TrainingSampleStats;
}

/** A training period: window starts from `fromMs` (inclusive) to `toMs` (exclusive), on the grid. */
export interface TrainingPeriod {
  fromMs: number;
  toMs: number;
}

/**
 * 32-bit hash of a user id's UTF-8 bytes: FNV-1a, then MurmurHash3's finaliser so that ids that
 * differ in one character (u0001, u0002) land far apart.
 */
export function userHashBytes(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ (bytes[i] as number), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function userHash(userId: string): number {
  return userHashBytes(Buffer.from(userId, 'utf8'));
}

/** Rows a user whose first login falls in window `firstWindow` contributes: the windows after it. */
export function trainingRowsOf(firstWindow: number, fromWindow: number, toWindow: number): number {
  return Math.max(0, toWindow - Math.max(firstWindow + 1, fromWindow));
}

interface Kept<T> {
  hash: number;
  id: Uint8Array;
  rows: number;
  value: T;
}

/** Orders users by (hash, id bytes): a total order, so ties of the hash cannot depend on input order. */
function compareKeys(hashA: number, idA: Uint8Array, hashB: number, idB: Uint8Array): number {
  return hashA - hashB || Buffer.compare(idA, idB);
}

/**
 * The users with the smallest keys whose rows fit in `maxRows` (at least one user), chosen in
 * one pass over users offered in any order: a max-heap of the kept users; when the rows overflow,
 * the largest keys are dropped and every key at or above the smallest dropped one is refused from
 * then on. The result is the longest prefix, in key order, of all users offered that fits.
 */
export class UserSampler<T> {
  readonly maxRows: number;
  #heap: Kept<T>[] = [];
  #rows = 0;
  #bound: { hash: number; id: Uint8Array } | undefined;

  constructor(maxRows: number) {
    if (!(maxRows >= 1)) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `the training row budget must be at least 1, not ${maxRows}`);
    this.maxRows = maxRows;
  }

  /** Whether a user with this key would be kept now (callers skip building its value otherwise). */
  admits(hash: number, id: Uint8Array): boolean {
    return this.#bound === undefined || compareKeys(hash, id, this.#bound.hash, this.#bound.id) < 0;
  }

  /** Offers a user (`id` is copied if the user is kept; `value` is called only then). */
  offer(hash: number, id: Uint8Array, rows: number, value: () => T): void {
    if (!this.admits(hash, id)) return;
    this.#push({ hash, id: id.slice(), rows, value: value() });
    this.#rows += rows;
    while (this.#rows > this.maxRows && this.#heap.length > 1) {
      const dropped = this.#pop();
      this.#rows -= dropped.rows;
      this.#bound = { hash: dropped.hash, id: dropped.id };
    }
  }

  /** Whether some user was left out. */
  get excluded(): boolean {
    return this.#bound !== undefined;
  }

  /** Share of the hash range below the bound (1 when nobody was left out). */
  get hashBound(): number {
    return this.#bound === undefined ? 1 : this.#bound.hash / 4_294_967_296;
  }

  get rows(): number {
    return this.#rows;
  }

  kept(): { rows: number; value: T }[] {
    return this.#heap.map(({ rows, value }) => ({ rows, value }));
  }

  #greater(a: Kept<T>, b: Kept<T>): boolean {
    return compareKeys(a.hash, a.id, b.hash, b.id) > 0;
  }

  #push(entry: Kept<T>): void {
    const heap = this.#heap;
    let i = heap.length;
    heap.push(entry);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const above = heap[parent] as Kept<T>;
      if (!this.#greater(entry, above)) break;
      heap[i] = above;
      i = parent;
    }
    heap[i] = entry;
  }

  #pop(): Kept<T> {
    const heap = this.#heap;
    const top = heap[0] as Kept<T>;
    const last = heap.pop() as Kept<T>;
    if (heap.length === 0) return top;
    // Sift the last entry down from the root, moving larger children up into the hole.
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && this.#greater(heap[right] as Kept<T>, heap[left] as Kept<T>) ? right : left;
      if (!this.#greater(heap[child] as Kept<T>, last)) break;
      heap[i] = heap[child] as Kept<T>;
      i = child;
    }
    heap[i] = last;
    return top;
  }
}

/** Window indexes of a training period. */
function periodWindows(grid: StateGrid, period: TrainingPeriod): { fromWindow: number; toWindow: number } {
  return { fromWindow: windowIndex(period.fromMs, grid), toWindow: windowIndex(period.toMs, grid) };
}

/** Population counts over the windows the features of a training period look at. */
function populationCountsFor(grid: StateGrid, period: TrainingPeriod): PopulationCounts {
  const { fromWindow, toWindow } = periodWindows(grid, period);
  return new PopulationCounts(grid, fromWindow - POPULATION_LOOKBACK_WINDOWS, toWindow);
}

/**
 * The training users of an in-memory log (users numbered by first login, logins sorted by time):
 * `keep[u]` for each user number, undefined when every user is kept. Only logins before the end
 * of the period count, as when the sample is read from Postgres.
 */
export function chooseTrainingUsers(log: LoginLog, grid: StateGrid, period: TrainingPeriod, maxRows: number): { keep?: Uint8Array; firstMs: Float64Array; stats: TrainingSampleStats } {
  const { fromWindow, toWindow } = periodWindows(grid, period);
  const userCount = log.userIds.length;
  const firstMs = new Float64Array(userCount).fill(Number.NaN);
  const loginCounts = new Int32Array(userCount);
  let logins = 0;
  for (let i = 0; i < log.at.length && (log.at[i] as number) < period.toMs; i++) {
    const u = log.user[i] as number;
    if (loginCounts[u] === 0) firstMs[u] = log.at[i] as number;
    loginCounts[u] = (loginCounts[u] as number) + 1;
    logins++;
  }
  const sampler = new UserSampler<number>(maxRows);
  let users = 0;
  let rows = 0;
  for (let u = 0; u < userCount; u++) {
    if (loginCounts[u] === 0) continue;
    const userRows = trainingRowsOf(windowIndex(firstMs[u] as number, grid), fromWindow, toWindow);
    if (userRows > 0) users++;
    rows += userRows;
    const id = Buffer.from(log.userIds[u] as string, 'utf8');
    sampler.offer(userHashBytes(id), id, userRows, () => u);
  }
  const kept = sampler.kept();
  let sampledUsers = 0;
  let sampledLogins = 0;
  const keep = sampler.excluded ? new Uint8Array(userCount) : undefined;
  for (const { rows: userRows, value: u } of kept) {
    if (userRows > 0) sampledUsers++;
    sampledLogins += loginCounts[u] as number;
    if (keep) keep[u] = 1;
  }
  return {
    keep,
    firstMs,
    stats: { users, sampledUsers, rows, sampledRows: sampler.rows, logins, sampledLogins, maxRows, hashBound: sampler.hashBound },
  };
}

/**
 * The training sample of an in-memory log: the log itself when every user fits in `maxRows`
 * rows, else the sampled users' logins before the end of the period, with population counts over
 * everybody.
 */
export function sampleLoginLog(log: LoginLog, grid: StateGrid, period: TrainingPeriod, maxRows: number): TrainingSample {
  const { keep, firstMs, stats } = chooseTrainingUsers(log, grid, period, maxRows);
  if (!keep) return { log, stats };
  const population = populationCountsFor(grid, period);
  const renumbered = new Int32Array(log.userIds.length).fill(-1);
  const userIds: string[] = [];
  for (let u = 0; u < log.userIds.length; u++) {
    if (!Number.isNaN(firstMs[u] as number)) population.addUser(firstMs[u] as number);
    if (keep[u] === 1) {
      renumbered[u] = userIds.length;
      userIds.push(log.userIds[u] as string);
    }
  }
  const user = new Int32Array(stats.sampledLogins);
  const at = new Float64Array(stats.sampledLogins);
  // Logins are sorted by time, so each user's windows come in order: a stamp per user dedupes them.
  const lastWindow = new Float64Array(log.userIds.length).fill(Number.NaN);
  let n = 0;
  for (let i = 0; i < log.at.length && (log.at[i] as number) < period.toMs; i++) {
    const u = log.user[i] as number;
    const atMs = log.at[i] as number;
    const window = windowIndex(atMs, grid);
    if (window !== lastWindow[u]) {
      lastWindow[u] = window;
      population.addActive(firstMs[u] as number, window);
    }
    if (keep[u] !== 1) continue;
    user[n] = renumbered[u] as number;
    at[n] = atMs;
    n++;
  }
  // Kept users stay in order of first login, so the sample's numbering is still by first login.
  return { log: { userIds, user, at }, population, stats };
}

/** PostgreSQL's epoch (2000-01-01) in Unix epoch ms: binary timestamps count microseconds from it. */
const PG_EPOCH_MS = 946_684_800_000;
const UTF8 = new TextDecoder();

/**
 * Reads a binary COPY of `(user_id text, at timestamptz)` rows ordered by user (then time) and
 * calls `visit` once per user with the user's id bytes and login times (ms, ascending; both
 * arrays are reused: copy what you keep). No object is made per row, and an id is decoded only
 * by a visitor that wants it.
 */
export async function forEachUserInCopy(stream: AsyncIterable<Buffer> | Iterable<Buffer>, visit: (id: Uint8Array, times: Float64Array, count: number) => void): Promise<void> {
  // The current user's id bytes (idLength of them; −1 before the first row) and login times.
  let id = new Uint8Array(64);
  let idLength = -1;
  let times = new Float64Array(256);
  let count = 0;
  const parser = new BinaryCopyRowParser(2, (buffer, offsets, lengths) => {
    const idStart = offsets[0] as number;
    const rowIdLength = lengths[0] as number;
    if (rowIdLength < 0) throw new Error('binary COPY row with a NULL user_id');
    if (lengths[1] !== 8) throw new Error('binary COPY row whose timestamp is not 8 bytes');
    const at = offsets[1] as number;
    // int64 microseconds since 2000-01-01, as two 32-bit halves (exact below 2^53).
    const atMs = Math.round((buffer.readInt32BE(at) * 4_294_967_296 + buffer.readUInt32BE(at + 4)) / 1000) + PG_EPOCH_MS;
    let sameUser = rowIdLength === idLength;
    for (let i = 0; sameUser && i < rowIdLength; i++) sameUser = buffer[idStart + i] === id[i];
    if (!sameUser) {
      if (count > 0) visit(id.subarray(0, idLength), times, count);
      if (rowIdLength > id.length) id = new Uint8Array(Math.max(rowIdLength, 2 * id.length));
      buffer.copy(id, 0, idStart, idStart + rowIdLength);
      idLength = rowIdLength;
      count = 0;
    }
    if (count === times.length) {
      const grown = new Float64Array(times.length * 2);
      grown.set(times);
      times = grown;
    }
    times[count++] = atMs;
  });
  for await (const chunk of stream) parser.push(chunk);
  parser.finish();
  if (count > 0) visit(id.subarray(0, idLength), times, count);
}

/**
 * The training sample from a binary COPY of every login before the end of the period, ordered by
 * user then time (see `forEachUserInCopy`): one pass that counts everybody's activity into the
 * population counts and keeps only the sampled users' logins, so memory is bounded by the sample
 * whatever the size of the table.
 */
export async function sampleLoginStream(stream: AsyncIterable<Buffer>, grid: StateGrid, period: TrainingPeriod, maxRows: number): Promise<TrainingSample> {
  const { fromWindow, toWindow } = periodWindows(grid, period);
  const population = populationCountsFor(grid, period);
  const sampler = new UserSampler<{ order: number; userId: string; times: Float64Array }>(maxRows);
  let users = 0;
  let rows = 0;
  let logins = 0;
  let order = 0;
  await forEachUserInCopy(stream, (id, times, count) => {
    // The query stops at the end of the period; a stray later login would still not count.
    while (count > 0 && (times[count - 1] as number) >= period.toMs) count--;
    if (count === 0) return;
    population.addLogins(times, count);
    logins += count;
    const userRows = trainingRowsOf(windowIndex(times[0] as number, grid), fromWindow, toWindow);
    if (userRows > 0) users++;
    rows += userRows;
    const arrival = order++;
    sampler.offer(userHashBytes(id), id, userRows, () => ({ order: arrival, userId: UTF8.decode(id), times: times.slice(0, count) }));
  });
  const kept = sampler.kept().sort((a, b) => a.value.order - b.value.order);
  // Users in arrival order (by user id), each user's logins in time order: the builder's stable
  // sort by time then leaves simultaneous logins by user id, as an ORDER BY at, user_id would.
  const builder = new LoginLogBuilder();
  let sampledUsers = 0;
  for (const { rows: userRows, value } of kept) {
    if (userRows > 0) sampledUsers++;
    for (let i = 0; i < value.times.length; i++) builder.add(value.userId, value.times[i] as number);
  }
  const stats: TrainingSampleStats = {
    users,
    sampledUsers,
    rows,
    sampledRows: sampler.rows,
    logins,
    sampledLogins: builder.length,
    maxRows,
    hashBound: sampler.hashBound,
  };
  return { log: builder.build(), ...(sampler.excluded ? { population } : {}), stats };
}
