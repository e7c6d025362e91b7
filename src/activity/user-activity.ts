import { booleanArrayLiteral, numberArrayLiteral, textArrayLiteral } from '../db/array-literal.ts';
import type { Queryable } from '../db/pool.ts';

/** One login to record. */
export interface LoginInput {
  userId: string;
  at: Date;
  /**
   * Whether this login makes its user known (a planning candidate; README, "Known users").
   * Default true. The API passes false for a login it answered `unknown_user`: any id can be
   * asked for, and one the recommender cannot personalise for is not worth precomputing.
   */
  vouched?: boolean;
}

/**
 * Where new logins come from: rows passed as parameters (the API's batched flush), or a table
 * with columns `(user_id text, at timestamptz)` — the importer's staging table. A table name is
 * spliced into the SQL, so it must be a constant of the caller's, never user input.
 */
export type LoginSource = { rows: readonly LoginInput[] } | { table: string };

export interface AppliedLogins {
  /** Logins that were new (not already in `logins`, and not repeated within the source). */
  inserted: number;
  /** Users whose user_activity row was created or updated. */
  users: number;
}

/** One interaction to record (the API's interactions route; import goes through a staging table). */
export interface InteractionInput {
  userId: string;
  itemId: string;
  at: Date;
  weight: number;
}

/** Where new interactions come from: rows passed as parameters, or a staging table (as LoginSource). */
export type InteractionSource = { rows: readonly InteractionInput[] } | { table: string };

const SAFE_TABLE = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * The only place user_activity is updated from logins. One statement inserts the source's logins
 * that `logins` does not hold yet and folds exactly those — the RETURNING rows, so a re-import or
 * a retried flush counts nothing twice — into user_activity: first = least, last = greatest,
 * count += new logins. Being one statement it is atomic on its own; inside a caller's
 * transaction it commits or rolls back with the rest.
 *
 * Rows are written in (user_id, at) order so that concurrent writers (API replicas flushing,
 * an import running beside them) take row locks in the same order and wait instead of
 * deadlocking; the order also keeps the logins primary-key inserts close together.
 *
 * Extending user_activity with more per-user state (propensity features) means extending the
 * `per_user` aggregate and the upsert below; both callers pick it up.
 */
export async function applyInsertedLogins(client: Queryable, source: LoginSource): Promise<AppliedLogins> {
  if ('rows' in source && source.rows.length === 0) return { inserted: 0, users: 0 };
  const sql = applyInsertedLoginsSql(source);
  const result = await client.query<{ inserted: number; users: number }>(sql.text, sql.values);
  const row = result.rows[0];
  return { inserted: row?.inserted ?? 0, users: row?.users ?? 0 };
}

/**
 * Records a batch of logins (the API's flush): same as applyInsertedLogins with rows. A login
 * makes its user known unless it says `vouched: false` (see knownUsersBefore).
 */
export function recordLogins(client: Queryable, rows: readonly LoginInput[]): Promise<AppliedLogins> {
  return applyInsertedLogins(client, { rows });
}

function applyInsertedLoginsSql(source: LoginSource): { text: string; values: unknown[] } {
  let from: string;
  let values: unknown[];
  if ('rows' in source) {
    // A (user, at) given twice is one login, vouched for if either copy is.
    // Instants as epoch milliseconds: sent as numbers, where ISO strings are built, quoted and parsed again.
    from = `(SELECT user_id, to_timestamp(at_ms / 1000) AS at, bool_or(vouched) AS vouched
               FROM unnest($1::text[], $2::float8[], $3::bool[]) AS rows (user_id, at_ms, vouched)
              GROUP BY user_id, at_ms) AS source`;
    values = [
      textArrayLiteral(source.rows.map((row) => row.userId)),
      numberArrayLiteral(source.rows.map((row) => row.at.getTime())),
      booleanArrayLiteral(source.rows.map((row) => row.vouched ?? true)),
    ];
  } else {
    if (!SAFE_TABLE.test(source.table)) throw new Error(`unsafe staging table name ${JSON.stringify(source.table)}`);
    // Every imported login vouches: no per-row flag to carry, so no join below.
    from = `(SELECT user_id, at, true AS vouched FROM ${source.table}) AS source`;
    values = [];
  }
  // Rows are grouped by (user_id, at) above, so joining them back to what was inserted cannot
  // repeat a login; a staging table may hold repeats, and all its logins vouch anyway.
  const perUserFrom = 'rows' in source ? 'inserted i JOIN source s ON s.user_id = i.user_id AND s.at = i.at' : 'inserted i';
  const firstVouched = 'rows' in source ? 'min(i.at) FILTER (WHERE s.vouched)' : 'min(i.at)';
  // Who is known (migration 0010): from the first vouched login (every imported login, an API
  // login not answered unknown_user) or the first interaction, whichever is earlier. least()
  // ignores NULLs. The interactions lookup (an index range) is made only for a user not known
  // yet: a known user's known_since already accounts for their interactions, as every
  // interaction recorded after the row exists lowers it (applyInsertedInteractions). It was
  // 40% of the upsert's time when made for every login.
  const firstInteraction = '(SELECT min(i.at) FROM interactions i WHERE i.user_id = per_user.user_id)';
  const knownSince = `CASE WHEN EXISTS (SELECT 1 FROM user_activity k WHERE k.user_id = per_user.user_id AND k.known_since IS NOT NULL)
                           THEN per_user.first_vouched_at ELSE least(per_user.first_vouched_at, ${firstInteraction}) END`;
  // ON CONFLICT DO NOTHING also drops repeats within the source itself: the second copy
  // conflicts with the first, inserted by this same statement.
  const text = `
    WITH source AS (
      SELECT user_id, at, vouched FROM ${from}
    ), inserted AS (
      INSERT INTO logins (user_id, at)
      SELECT source.user_id, source.at FROM source
      ORDER BY source.user_id, source.at
      ON CONFLICT DO NOTHING
      RETURNING user_id, at
    ), per_user AS (
      SELECT i.user_id, min(i.at) AS first_login_at, max(i.at) AS last_login_at, count(*) AS login_count,
             ${firstVouched} AS first_vouched_at
      FROM ${perUserFrom}
      GROUP BY i.user_id
    ), upserted AS (
      INSERT INTO user_activity AS ua (user_id, first_login_at, last_login_at, login_count, known_since, updated_at)
      SELECT user_id, first_login_at, last_login_at, login_count, ${knownSince}, now() FROM per_user
      ORDER BY user_id
      ON CONFLICT (user_id) DO UPDATE SET
        first_login_at = least(ua.first_login_at, excluded.first_login_at),
        last_login_at = greatest(ua.last_login_at, excluded.last_login_at),
        login_count = ua.login_count + excluded.login_count,
        known_since = least(ua.known_since, excluded.known_since),
        updated_at = now()
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM inserted)::int AS inserted, (SELECT count(*) FROM upserted)::int AS users`;
  return { text, values };
}

/**
 * The interactions import's part of user_activity: inserts the staging table's interactions
 * that `interactions` does not hold yet, and makes their users known from the first of them
 * (`known_since`, migration 0010) when they have a user_activity row; a user without one gets
 * it from `interactions` when their first login is recorded. Returns the number inserted.
 *
 * Rows to update are locked in user_id order, as applyInsertedLogins does, so that an import
 * and the API's flushes wait for each other instead of deadlocking. Only users not yet known
 * from an earlier instant are touched: after the first import, next to nothing.
 */
export async function applyInsertedInteractions(client: Queryable, source: InteractionSource): Promise<number> {
  let from: string;
  let values: unknown[] = [];
  if ('table' in source) {
    if (!SAFE_TABLE.test(source.table)) throw new Error(`unsafe staging table name ${JSON.stringify(source.table)}`);
    from = source.table;
  } else {
    from = 'unnest($1::text[], $2::text[], $3::timestamptz[], $4::real[]) AS t(user_id, item_id, at, weight)';
    values = [
      source.rows.map((row) => row.userId),
      source.rows.map((row) => row.itemId),
      source.rows.map((row) => row.at.toISOString()),
      source.rows.map((row) => row.weight),
    ];
  }
  const text = `
    WITH inserted AS (
      -- Sorted like the primary key so its index is filled in order; DO NOTHING also drops a row
      -- repeated within the batch (it conflicts with its first copy, inserted by this statement).
      INSERT INTO interactions (user_id, item_id, at, weight)
      SELECT user_id, item_id, at, weight FROM ${from} ORDER BY user_id, at, item_id
      ON CONFLICT DO NOTHING
      RETURNING user_id, at
    ), per_user AS (
      SELECT user_id, min(at) AS first_at FROM inserted GROUP BY user_id
    ), to_mark AS (
      SELECT ua.user_id, p.first_at
        FROM user_activity ua JOIN per_user p ON p.user_id = ua.user_id
       WHERE ua.known_since IS NULL OR ua.known_since > p.first_at
       ORDER BY ua.user_id
         FOR UPDATE OF ua
    ), marked AS (
      UPDATE user_activity ua SET known_since = least(ua.known_since, m.first_at), updated_at = now()
        FROM to_mark m WHERE ua.user_id = m.user_id
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM inserted)::int AS inserted, (SELECT count(*) FROM marked)::int AS marked`;
  const result = await client.query<{ inserted: number }>(text, values);
  return result.rows[0]?.inserted ?? 0;
}

/**
 * The rule of who is a planning candidate (README, "Known users"): users known before
 * `before` — with an interaction, or a vouched login, before it. Ids only ever answered
 * `unknown_user` by the API are not. A scorer applies it by adding `AND known_since < $before` to its
 * user_activity query, or by filtering its candidates with onlyKnownUsers.
 */
export function knownUsersSql(before: Date): { text: string; values: unknown[] } {
  return { text: 'SELECT user_id FROM user_activity WHERE known_since < $1', values: [before.toISOString()] };
}

/** The ids of the users known before `before` (see knownUsersSql). */
export async function knownUsersBefore(client: Queryable, before: Date): Promise<Set<string>> {
  const sql = knownUsersSql(before);
  const result = await client.query<{ user_id: string }>(sql.text, sql.values);
  return new Set(result.rows.map((row) => row.user_id));
}

/** Candidates (anything with a userId) restricted to the known users. */
export function onlyKnownUsers<C extends { userId: string }>(candidates: readonly C[], known: ReadonlySet<string>): C[] {
  return candidates.filter((candidate) => known.has(candidate.userId));
}
