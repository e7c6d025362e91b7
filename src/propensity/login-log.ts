import { readCsv, type CsvRowError } from '../activity/csv.ts';
import { PrewarmError } from '../errors.ts';

/**
 * A login log held in memory as columns, sorted by time: what the offline evaluation, the
 * backtest and training walk over. Users are numbered in order of their first login, so the
 * users known at any instant (first login before it) are always a prefix 0 … k−1.
 */
export interface LoginLog {
  /** User ids by user number. */
  userIds: string[];
  /** User number of each login. */
  user: Int32Array;
  /** Epoch ms of each login, ascending. */
  at: Float64Array;
}

export interface LoginLogStats {
  logins: number;
  users: number;
  /** Lines of the file that were skipped, with the first few reasons. */
  skipped: number;
  firstErrors: CsvRowError[];
}

/** Accumulates logins in any order and produces a sorted LoginLog. */
export class LoginLogBuilder {
  #ids = new Map<string, number>();
  #names: string[] = [];
  #user = new Int32Array(1024);
  #at = new Float64Array(1024);
  #length = 0;
  #sorted = true;

  add(userId: string, atMs: number): void {
    let index = this.#ids.get(userId);
    if (index === undefined) {
      index = this.#names.length;
      this.#ids.set(userId, index);
      this.#names.push(userId);
    }
    if (this.#length === this.#user.length) {
      const user = new Int32Array(this.#user.length * 2);
      user.set(this.#user);
      this.#user = user;
      const at = new Float64Array(this.#at.length * 2);
      at.set(this.#at);
      this.#at = at;
    }
    if (this.#length > 0 && atMs < (this.#at[this.#length - 1] as number)) this.#sorted = false;
    this.#user[this.#length] = index;
    this.#at[this.#length] = atMs;
    this.#length++;
  }

  get length(): number {
    return this.#length;
  }

  build(): LoginLog {
    const n = this.#length;
    let user = this.#user.subarray(0, n);
    let at = this.#at.subarray(0, n);
    if (!this.#sorted) {
      // Stable sort by time (then by arrival), through an index permutation.
      const order = new Uint32Array(n);
      for (let i = 0; i < n; i++) order[i] = i;
      const times = at;
      order.sort((a, b) => (times[a] as number) - (times[b] as number) || a - b);
      const sortedUser = new Int32Array(n);
      const sortedAt = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        sortedUser[i] = user[order[i] as number] as number;
        sortedAt[i] = at[order[i] as number] as number;
      }
      user = sortedUser;
      at = sortedAt;
    } else {
      user = user.slice();
      at = at.slice();
    }
    return renumberByFirstLogin(this.#names, user, at);
  }
}

/** Renumbers users so that user numbers follow the order of first logins. */
function renumberByFirstLogin(names: string[], user: Int32Array, at: Float64Array): LoginLog {
  const mapping = new Int32Array(names.length).fill(-1);
  const userIds: string[] = [];
  for (let i = 0; i < user.length; i++) {
    const old = user[i] as number;
    let next = mapping[old] as number;
    if (next < 0) {
      next = userIds.length;
      mapping[old] = next;
      userIds.push(names[old] as string);
    }
    user[i] = next;
  }
  return { userIds, user, at };
}

/** A log from rows in any order (tests, Postgres). */
export function loginLogFrom(rows: Iterable<{ userId: string; at: Date | number }>): LoginLog {
  const builder = new LoginLogBuilder();
  for (const row of rows) builder.add(row.userId, typeof row.at === 'number' ? row.at : row.at.getTime());
  return builder.build();
}

/**
 * Reads a logins CSV (`user_id,ts`, plain or gzip) into memory. Malformed lines are skipped and
 * counted; a file with no valid login is refused.
 */
export async function readLoginLog(path: string): Promise<{ log: LoginLog; stats: LoginLogStats }> {
  const builder = new LoginLogBuilder();
  let skipped = 0;
  const firstErrors: CsvRowError[] = [];
  for await (const row of readCsv(path, 'logins', {
    onError: (error) => {
      skipped++;
      if (firstErrors.length < 5) firstErrors.push(error);
    },
  })) {
    builder.add(row.userId, row.at.getTime());
  }
  if (builder.length === 0) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--logins ${path}: the file has no valid login`);
  const log = builder.build();
  return { log, stats: { logins: log.at.length, users: log.userIds.length, skipped, firstErrors } };
}
