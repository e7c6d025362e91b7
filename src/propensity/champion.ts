import type { Clock } from '../clock.ts';
import type { Pool, Queryable, Sql } from '../db/pool.ts';
import { PrewarmError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { streamingScorer } from '../planner/scorer.ts';
import { createModelScorer } from './model-scorer.ts';
import { latestModelVersion } from './model-store.ts';
import { weightedQuality } from './quality.ts';

/**
 * Champion and challenger. The model the scheduler trains while another one serves is a
 * *challenger*: the planner keeps scoring with the serving model (the champion), and after each
 * run is planned the challenger scores the same recorded users in shadow (`challenger_predictions`).
 * Once runs it shadowed have ended with enough logins among their users, both are judged on the
 * same users and the same outcomes, weighted as the recorded rows are: the challenger is promoted
 * when its average precision is at least the champion's and its calibration error at most the
 * champion's, otherwise it is rejected, with the figures kept either way.
 */

export type ModelRole = 'challenger' | 'champion' | 'rejected';

/** A decision waits until the shadowed runs that ended hold this many logins (weighted) among their users. */
export const MIN_DECISION_LOGINS = 20;

export interface ComparedFigures {
  averagePrecision: number | null;
  calibrationError: number | null;
}

/** The comparison behind a decision, as stored in `propensity_model_roles.figures`. */
export interface DecisionFigures {
  runs: number;
  /** Rows compared (recorded users × runs) and the users and logins they stand for (Σ weight). */
  rows: number;
  users: number;
  loggedIn: number;
  /** The serving models that scored those runs. */
  champions: string[];
  champion: ComparedFigures;
  challenger: ComparedFigures;
}

export interface RoleRow {
  version: string;
  role: ModelRole;
  decidedAt: Date;
  decidedBy: string;
  figures: DecisionFigures | null;
  reason: string | null;
}

const finite = (x: number): number | null => (Number.isFinite(x) ? x : null);

/** The SQL of this module, parameterised. */
export const championSql = {
  setRole(version: string, role: ModelRole, at: Date, by: string, figures: DecisionFigures | null, reason: string | null): Sql {
    return {
      text: `INSERT INTO propensity_model_roles (version, role, decided_at, decided_by, figures, reason) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (version) DO UPDATE SET role = EXCLUDED.role, decided_at = EXCLUDED.decided_at, decided_by = EXCLUDED.decided_by,
               figures = coalesce(EXCLUDED.figures, propensity_model_roles.figures), reason = EXCLUDED.reason`,
      values: [version, role, at, by, figures === null ? null : JSON.stringify(figures), reason],
    };
  },
  /** Challengers still waiting for a decision, newest first. */
  challengers(): Sql {
    return {
      text: `SELECT m.version, m.train_to, m.trained_at, r.decided_at FROM propensity_model_roles r JOIN propensity_models m USING (version)
              WHERE r.role = 'challenger' ORDER BY m.trained_at DESC, m.version DESC`,
    };
  },
  /**
   * Runs the challenger has not scored yet: planned by another model since it became the
   * challenger, with recorded users, whose window starts at or after the end of its training
   * period (so no label it was trained on is judged).
   */
  runsToShadow(version: string, trainTo: Date, since: Date, limit: number): Sql {
    return {
      text: `SELECT b.id, b.scheduled_for, b.expires_at FROM batch_runs b
              WHERE b.scheduled_for >= $2 AND b.started_at >= $4 AND b.model_version IS DISTINCT FROM $1
                AND EXISTS (SELECT 1 FROM propensity_models m WHERE m.version = b.model_version)
                AND EXISTS (SELECT 1 FROM predictions p WHERE p.run_id = b.id)
                AND NOT EXISTS (SELECT 1 FROM challenger_predictions c WHERE c.run_id = b.id AND c.version = $1)
              ORDER BY b.scheduled_for, b.id LIMIT $3`,
      values: [version, trainTo, limit, since],
    };
  },
  recordedUsers(runId: number): Sql {
    return { text: 'SELECT user_id FROM predictions WHERE run_id = $1', values: [runId] };
  },
  insertShadow(runId: number, version: string, userIds: string[], p: number[]): Sql {
    return {
      text: `INSERT INTO challenger_predictions (run_id, version, user_id, p)
             SELECT $1, $2, u, s FROM unnest($3::text[], $4::real[]) AS t (u, s)
             ON CONFLICT DO NOTHING`,
      values: [runId, version, userIds, p],
    };
  },
  /** Both scores of every shadowed user of the runs that ended by `now`, with the outcome. */
  compared(version: string, now: Date): Sql {
    return {
      text: `SELECT c.run_id, b.model_version, c.p AS challenger_p, p.p AS champion_p, p.weight,
                    EXISTS (SELECT 1 FROM logins l WHERE l.user_id = c.user_id AND l.at >= b.scheduled_for AND l.at < b.expires_at) AS logged_in
               FROM challenger_predictions c
               JOIN batch_runs b ON b.id = c.run_id
               JOIN predictions p ON p.run_id = c.run_id AND p.user_id = c.user_id
              WHERE c.version = $1 AND b.expires_at <= $2`,
      values: [version, now],
    };
  },
  /** A decided challenger's shadow scores: its figures are kept with the decision, the rows are not. */
  dropShadow(version: string): Sql {
    return { text: 'DELETE FROM challenger_predictions WHERE version = $1', values: [version] };
  },
  roles(): Sql {
    return { text: 'SELECT version, role, decided_at, decided_by, figures, reason FROM propensity_model_roles' };
  },
  /** Models other than `version` that could serve (no role, or champion). */
  otherServable(version: string): Sql {
    return {
      text: `SELECT count(*) AS n FROM propensity_models m LEFT JOIN propensity_model_roles r USING (version)
              WHERE m.version <> $1 AND (r.role IS NULL OR r.role = 'champion')`,
      values: [version],
    };
  },
  exists(version: string): Sql {
    return { text: 'SELECT version FROM propensity_models WHERE version = $1', values: [version] };
  },
};

/** Marks `version` as a challenger; an older challenger still waiting is rejected as superseded. */
export async function markChallenger(pool: Queryable, version: string, clock: Clock, log: Logger): Promise<void> {
  const waiting = await pool.query<{ version: string }>(championSql.challengers().text);
  for (const row of waiting.rows) {
    if (row.version === version) continue;
    const sql = championSql.setRole(row.version, 'rejected', clock.now(), 'scheduler', null, `superseded by ${version} before a decision`);
    await pool.query(sql.text, sql.values);
    await dropShadow(pool, row.version);
    log.info({ version: row.version, by: version }, 'propensity challenger superseded before a decision');
  }
  const sql = championSql.setRole(version, 'challenger', clock.now(), 'scheduler', null, null);
  await pool.query(sql.text, sql.values);
}

/**
 * The challenger scores, for each run it has not scored, the users the run recorded: every known
 * user is scored at the run's window start (states rewound, as the planner scores) and the
 * recorded ones are kept. Returns the runs scored.
 */
export async function shadowScore(options: { pool: Pool; log: Logger; limit?: number }): Promise<number> {
  const { pool, log } = options;
  const [challenger] = (await pool.query<{ version: string; train_to: Date; decided_at: Date }>(championSql.challengers().text)).rows;
  if (!challenger) return 0;
  const runs = championSql.runsToShadow(challenger.version, challenger.train_to, challenger.decided_at, options.limit ?? 10);
  const pending = (await pool.query<{ id: string; scheduled_for: Date; expires_at: Date }>(runs.text, runs.values)).rows;
  if (pending.length === 0) return 0;
  // The planner's own streaming path (known users only, states rewound, batches of bounded size).
  const streaming = streamingScorer(await createModelScorer({ pool, log, version: challenger.version }));
  const shard = { index: 0, count: 1 };
  const batchSize = 20_000;
  for (const run of pending) {
    const runId = Number(run.id);
    const recordedSql = championSql.recordedUsers(runId);
    const recorded = new Set((await pool.query<{ user_id: string }>(recordedSql.text, recordedSql.values)).rows.map((row) => row.user_id));
    const windowStart = run.scheduled_for;
    const horizonMs = run.expires_at.getTime() - windowStart.getTime();
    const { version } = await streaming.prepare(windowStart, horizonMs);
    const population = streaming.mergePopulation([await streaming.population({ windowStart, horizonMs, shard, version, batchSize })]);
    let userIds: string[] = [];
    let p: number[] = [];
    let written = 0;
    const flush = async () => {
      const insert = championSql.insertShadow(runId, version, userIds, p);
      await pool.query(insert.text, insert.values);
      written += userIds.length;
      userIds = [];
      p = [];
    };
    for await (const batch of streaming.scoreShard({ windowStart, horizonMs, shard, version, population, batchSize })) {
      for (let i = 0; i < batch.size; i++) {
        const userId = batch.userIds[i] as string;
        if (!recorded.has(userId)) continue;
        userIds.push(userId);
        p.push(batch.p[i] as number);
      }
      if (userIds.length >= 10_000) await flush();
    }
    if (userIds.length > 0) await flush();
    log.info({ runId, version, users: written, recorded: recorded.size }, 'propensity challenger scored a run in shadow');
  }
  return pending.length;
}

/** Champion and challenger on the shadowed users of the runs that ended by `now`. */
export async function compareOnOutcomes(pool: Queryable, version: string, now: Date): Promise<DecisionFigures> {
  const sql = championSql.compared(version, now);
  const rows = (await pool.query<{ run_id: string; model_version: string; challenger_p: number; champion_p: number; weight: number; logged_in: boolean }>(sql.text, sql.values)).rows;
  const n = rows.length;
  const champion = new Float64Array(n);
  const challenger = new Float64Array(n);
  const labels = new Uint8Array(n);
  const weights = new Float64Array(n);
  const runs = new Set<string>();
  const champions = new Set<string>();
  rows.forEach((row, i) => {
    champion[i] = Number(row.champion_p);
    challenger[i] = Number(row.challenger_p);
    labels[i] = row.logged_in ? 1 : 0;
    weights[i] = Number(row.weight);
    runs.add(row.run_id);
    champions.add(row.model_version);
  });
  const a = weightedQuality(champion, labels, weights, n);
  const b = weightedQuality(challenger, labels, weights, n);
  return {
    runs: runs.size,
    rows: n,
    users: a.scoredUsers,
    loggedIn: a.loggedIn,
    champions: [...champions].sort(),
    champion: { averagePrecision: finite(a.averagePrecision), calibrationError: finite(a.calibrationError) },
    challenger: { averagePrecision: finite(b.averagePrecision), calibrationError: finite(b.calibrationError) },
  };
}

/** At least as good: AP not lower and calibration error not higher, on the same users. */
export function challengerWins(figures: DecisionFigures): boolean {
  const { champion, challenger } = figures;
  if (challenger.averagePrecision === null || challenger.calibrationError === null) return false;
  const apOk = champion.averagePrecision === null || challenger.averagePrecision >= champion.averagePrecision;
  const eceOk = champion.calibrationError === null || challenger.calibrationError <= champion.calibrationError;
  return apOk && eceOk;
}

/**
 * Decides the waiting challenger once the runs it shadowed that ended hold MIN_DECISION_LOGINS
 * logins: promoted (serving from now) or rejected, figures stored. Returns the decision, if any.
 */
export async function decideChallenger(options: { pool: Queryable; log: Logger; clock: Clock; minLogins?: number }): Promise<{ version: string; role: 'champion' | 'rejected'; figures: DecisionFigures } | undefined> {
  const { pool, log, clock } = options;
  const [challenger] = (await pool.query<{ version: string }>(championSql.challengers().text)).rows;
  if (!challenger) return undefined;
  const now = clock.now();
  const figures = await compareOnOutcomes(pool, challenger.version, now);
  if (figures.runs === 0 || figures.loggedIn < (options.minLogins ?? MIN_DECISION_LOGINS)) return undefined;
  const role = challengerWins(figures) ? 'champion' : 'rejected';
  const reason = role === 'champion' ? 'at least as good as the serving model on the same users' : 'worse than the serving model on the same users';
  const sql = championSql.setRole(challenger.version, role, now, 'scheduler', figures, reason);
  await pool.query(sql.text, sql.values);
  await dropShadow(pool, challenger.version);
  log.info({ version: challenger.version, role, figures }, role === 'champion' ? 'propensity challenger promoted' : 'propensity challenger rejected');
  return { version: challenger.version, role, figures };
}

async function dropShadow(pool: Queryable, version: string): Promise<void> {
  const sql = championSql.dropShadow(version);
  await pool.query(sql.text, sql.values);
}

async function assertModelExists(pool: Queryable, version: string): Promise<void> {
  const sql = championSql.exists(version);
  if ((await pool.query(sql.text, sql.values)).rows.length === 0) {
    throw new PrewarmError('PREWARM_ERR_NO_MODEL', `no propensity model ${version} (prewarm models list)`);
  }
}

/** An operator's promotion: `version` serves from now on, whatever its figures. */
export async function promoteModel(pool: Queryable, version: string, clock: Clock): Promise<void> {
  await assertModelExists(pool, version);
  const sql = championSql.setRole(version, 'champion', clock.now(), 'operator', null, 'promoted by an operator');
  await pool.query(sql.text, sql.values);
  await dropShadow(pool, version);
}

/**
 * An operator's rejection: `version` no longer serves nor shadows. Refused when it is the only
 * model that could serve (the planner would have none).
 */
export async function rejectModel(pool: Queryable, version: string, clock: Clock): Promise<void> {
  await assertModelExists(pool, version);
  const serving = await latestModelVersion(pool);
  if (serving?.version === version) {
    const othersSql = championSql.otherServable(version);
    const others = await pool.query<{ n: string }>(othersSql.text, othersSql.values);
    if (Number(others.rows[0]?.n ?? 0) === 0) {
      throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `${version} is the only model that can serve: promote another one first`);
    }
  }
  const sql = championSql.setRole(version, 'rejected', clock.now(), 'operator', null, 'rejected by an operator');
  await pool.query(sql.text, sql.values);
  await dropShadow(pool, version);
}

export async function loadRoles(pool: Queryable): Promise<Map<string, RoleRow>> {
  const rows = await pool.query<{ version: string; role: ModelRole; decided_at: Date; decided_by: string; figures: DecisionFigures | null; reason: string | null }>(championSql.roles().text);
  return new Map(rows.rows.map((row) => [row.version, { version: row.version, role: row.role, decidedAt: row.decided_at, decidedBy: row.decided_by, figures: row.figures, reason: row.reason }]));
}
