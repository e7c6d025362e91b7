import { BinaryCopyWriter, copyIn } from '../db/copy-binary.ts';
import type { Pool, PoolClient, Queryable, Sql } from '../db/pool.ts';
import type { RecommendationSet } from './set.ts';

// All SQL of the recommendations table lives here.
const COLUMNS = 'id, user_id, source, run_id, holdout, computed_at, expires_at, item_ids, scores, model_version, compute_ms';

// Sets go by binary COPY. A worker's chunk goes straight into the table (`insertNew`): the
// worker holds its chunk's row lock, so its ids cannot be there yet. Other writers (a login's
// on-demand sets, retried after a failed flush) need idempotence: their sets go to a
// session-private staging table, then move with one INSERT … ON CONFLICT DO NOTHING (the detour
// costs ≈40% more server CPU per set, measured with lz4). The staging table copies the target's
// columns, defaults and compression, and is emptied before each use, so it works with or without
// an enclosing transaction.
const sql = {
  createStaging: `CREATE TEMP TABLE IF NOT EXISTS recommendations_incoming (LIKE recommendations INCLUDING COMPRESSION INCLUDING DEFAULTS)`,
  emptyStaging: 'TRUNCATE recommendations_incoming',
  copyStaging: `COPY recommendations_incoming (${COLUMNS}) FROM STDIN WITH (FORMAT binary)`,
  copyDirect: `COPY recommendations (${COLUMNS}) FROM STDIN WITH (FORMAT binary)`,
  moveStaging: `INSERT INTO recommendations (${COLUMNS})
                SELECT ${COLUMNS} FROM recommendations_incoming
                ON CONFLICT DO NOTHING
                RETURNING id`,
  findFresh(userId: string, at: Date): Sql {
    // Newest fresh set wins: a batch set computed after an on-demand one replaces it.
    return {
      text: `SELECT ${COLUMNS}
               FROM recommendations
              WHERE user_id = $1 AND computed_at <= $2 AND expires_at > $2
              ORDER BY computed_at DESC
              LIMIT 1`,
      values: [userId, at.toISOString()],
    };
  },
};

interface SetRow {
  id: string;
  user_id: string;
  source: 'batch' | 'on_demand';
  run_id: number | null;
  holdout: boolean;
  computed_at: Date;
  expires_at: Date;
  item_ids: string[];
  scores: number[];
  model_version: string;
  compute_ms: number;
}

function toSet(row: SetRow): RecommendationSet {
  return {
    id: row.id,
    userId: row.user_id,
    source: row.source,
    runId: row.run_id,
    holdout: row.holdout,
    computedAt: row.computed_at,
    expiresAt: row.expires_at,
    itemIds: row.item_ids,
    scores: row.scores,
    modelVersion: row.model_version,
    computeMs: row.compute_ms,
  };
}

/** Sets encoded for COPY (binary format, header and trailer included). */
export interface EncodedSets {
  readonly count: number;
  readonly payload: Buffer;
}

export interface RecommendationStore {
  /**
   * Writes sets in one COPY and one INSERT; ids already present are skipped. Pass a client to
   * write inside its transaction. Returns the ids inserted.
   */
  insertMany(db: Pool | PoolClient, sets: readonly RecommendationSet[]): Promise<Set<string>>;
  /**
   * The sets as `insertNew` writes them. Encoding first lets a worker drop the sets before it
   * waits for Postgres, so they die young instead of being promoted by the garbage collector.
   */
  encode(sets: readonly RecommendationSet[]): EncodedSets;
  /**
   * `encode` one set at a time: each set's arrays are read by `add` and may be reused afterwards
   * (a worker fills the same two scratch arrays for every user of its chunk).
   */
  encoder(expectedSets: number): SetRowsWriter;
  /**
   * Writes sets whose ids the caller knows are new (a worker holding its chunk's lock), in one
   * COPY straight into the table; an id already present fails the whole statement.
   */
  insertNew(client: PoolClient, sets: EncodedSets): Promise<void>;
  /** The newest set for the user that is fresh at `at`, if any. */
  findFresh(userId: string, at: Date): Promise<RecommendationSet | undefined>;
}

/** Sets added one by one to a binary COPY stream. */
export interface SetRowsWriter {
  add(set: RecommendationSet): void;
  /** The stream; the writer must not be used afterwards. */
  finish(): EncodedSets;
}

export function createRecommendationStore({ pool }: { pool: Queryable }): RecommendationStore {
  return {
    async insertMany(db, sets) {
      if (sets.length === 0) return new Set();
      const isClient = 'release' in db;
      const client = isClient ? db : await db.connect();
      try {
        await client.query(sql.createStaging);
        await client.query(sql.emptyStaging);
        await copyIn(client, sql.copyStaging, copyRows(sets));
        const result = await client.query<{ id: string }>(sql.moveStaging);
        return new Set(result.rows.map((row) => row.id));
      } finally {
        if (!isClient) client.release();
      }
    },
    encode: (sets) => ({ count: sets.length, payload: copyRows(sets) }),
    encoder: rowsWriter,
    async insertNew(client, sets) {
      if (sets.count > 0) await copyIn(client, sql.copyDirect, sets.payload);
    },
    async findFresh(userId, at) {
      const result = await pool.query<SetRow>(sql.findFresh(userId, at));
      return result.rows[0] ? toSet(result.rows[0]) : undefined;
    },
  };
}

/** The sets as one binary COPY stream, columns in the order of COLUMNS. */
function copyRows(sets: readonly RecommendationSet[]): Buffer {
  const rows = rowsWriter(sets.length);
  for (const s of sets) rows.add(s);
  return rows.finish().payload;
}

function rowsWriter(expectedSets: number): SetRowsWriter {
  const writer = new BinaryCopyWriter(expectedSets * 2_048);
  let count = 0;
  return {
    add(s) {
      writer.row(11).uuid(s.id).text(s.userId).text(s.source);
      if (s.runId === null) writer.null();
      else writer.int8(s.runId);
      writer
        .bool(s.holdout)
        .timestamptz(s.computedAt)
        .timestamptz(s.expiresAt)
        .textArray(s.itemIds)
        .float4Array(s.scores)
        .text(s.modelVersion)
        .float4(s.computeMs);
      count++;
    },
    finish: () => ({ count, payload: writer.finish() }),
  };
}
