import type { Queryable } from '../db/pool.ts';

/** One login to record. */
export interface LoginInput {
  userId: string;
  at: Date;
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

/** Records a batch of logins (the API's flush): same as applyInsertedLogins with rows. */
export function recordLogins(client: Queryable, rows: readonly LoginInput[]): Promise<AppliedLogins> {
  return applyInsertedLogins(client, { rows });
}

function applyInsertedLoginsSql(source: LoginSource): { text: string; values: unknown[] } {
  let from: string;
  let values: unknown[];
  if ('rows' in source) {
    from = 'unnest($1::text[], $2::timestamptz[]) AS source (user_id, at)';
    values = [source.rows.map((row) => row.userId), source.rows.map((row) => row.at.toISOString())];
  } else {
    if (!SAFE_TABLE.test(source.table)) throw new Error(`unsafe staging table name ${JSON.stringify(source.table)}`);
    from = `${source.table} AS source`;
    values = [];
  }
  // ON CONFLICT DO NOTHING also drops repeats within the source itself: the second copy
  // conflicts with the first, inserted by this same statement.
  const text = `
    WITH inserted AS (
      INSERT INTO logins (user_id, at)
      SELECT source.user_id, source.at FROM ${from}
      ORDER BY source.user_id, source.at
      ON CONFLICT DO NOTHING
      RETURNING user_id, at
    ), per_user AS (
      SELECT user_id, min(at) AS first_login_at, max(at) AS last_login_at, count(*) AS login_count
      FROM inserted
      GROUP BY user_id
    ), upserted AS (
      INSERT INTO user_activity AS ua (user_id, first_login_at, last_login_at, login_count, updated_at)
      SELECT user_id, first_login_at, last_login_at, login_count, now() FROM per_user
      ORDER BY user_id
      ON CONFLICT (user_id) DO UPDATE SET
        first_login_at = least(ua.first_login_at, excluded.first_login_at),
        last_login_at = greatest(ua.last_login_at, excluded.last_login_at),
        login_count = ua.login_count + excluded.login_count,
        updated_at = now()
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM inserted)::int AS inserted, (SELECT count(*) FROM upserted)::int AS users`;
  return { text, values };
}
