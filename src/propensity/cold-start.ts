import type { Pool } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { formatPolicy, type Policy } from '../planner/policy.ts';
import { chooseRule, type RuleFigures } from './online.ts';
import { COLD_START, COLD_START_RULES } from './train.ts';

/**
 * Cold start (README "Cold start"): while there is too little history to train a model, a window
 * whose policy asks for a coverage or a waste selects by the `recent:K` rule (K in
 * COLD_START_RULES) that meets that goal best on the latest windows of history. `evaluate
 * --online` and the planner call the same backtest on the same logins, so they choose the same
 * rule.
 */

/**
 * Preparations the deployment's scorer (createDefaultScorer) made with its recency stand-in because
 * no model is trained yet: a cold start. A planner given the recency scorer on purpose (tests, a
 * deliberate choice) is not in a cold start and keeps its policy.
 */
const coldStartPreparations = new WeakSet<object>();

export function markColdStart<T extends object>(prepared: T): T {
  coldStartPreparations.add(prepared);
  return prepared;
}

export function isColdStart(prepared: object): boolean {
  return coldStartPreparations.has(prepared);
}

/** Logins sorted by time; `user` numbers users, `firstLoginMs[u]` is user u's first login ever. */
export interface BacktestLogins {
  user: ArrayLike<number>;
  at: ArrayLike<number>;
  firstLoginMs: ArrayLike<number>;
}

/**
 * Coverage and waste of each `recent:K` rule over the `windows` windows before `atMs`
 * ([atMs − j·W, atMs − (j−1)·W), j = 1 … windows): known users are those with a first login before
 * a window's start, a rule selects the known users with a login in the K windows before it, and
 * coverage is hits over the known users active in it — the offline protocol's figures.
 */
export function backtestRecencyRules(logins: BacktestLogins, atMs: number, windowMs: number, windows: number = COLD_START.backtestWindows, rules: readonly number[] = COLD_START_RULES): RuleFigures[] {
  const byUser = new Map<number, number[]>();
  for (let i = 0; i < logins.at.length; i++) {
    const at = logins.at[i] as number;
    if (at >= atMs) break;
    const u = logins.user[i] as number;
    let times = byUser.get(u);
    if (!times) byUser.set(u, (times = []));
    times.push(at);
  }
  const selected = rules.map(() => 0);
  const hits = rules.map(() => 0);
  let activeKnown = 0;
  for (let j = 1; j <= windows; j++) {
    const start = atMs - j * windowMs;
    const end = start + windowMs;
    for (const [u, times] of byUser) {
      if (!((logins.firstLoginMs[u] as number) < start)) continue;
      // The user's latest login before the window and whether one falls inside it.
      let lo = 0;
      let hi = times.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if ((times[mid] as number) < start) lo = mid + 1;
        else hi = mid;
      }
      const last = lo > 0 ? (times[lo - 1] as number) : Number.NEGATIVE_INFINITY;
      const active = lo < times.length && (times[lo] as number) < end;
      if (active) activeKnown++;
      rules.forEach((k, r) => {
        if (last >= start - k * windowMs) {
          selected[r] = (selected[r] as number) + 1;
          if (active) hits[r] = (hits[r] as number) + 1;
        }
      });
    }
  }
  return rules.map((k, r) => ({
    k,
    coverage: activeKnown > 0 ? (hits[r] as number) / activeKnown : 0,
    waste: (selected[r] as number) > 0 ? 1 - (hits[r] as number) / (selected[r] as number) : 0,
  }));
}

/** The rule a cold start selects by for `goal`: `recent:28` when the history holds no window. */
export function coldStartRule(goal: Policy, figures: readonly RuleFigures[]): Policy {
  const usable = figures.some((f) => f.coverage > 0 || f.waste > 0) ? figures : [];
  const best = chooseRule(goal, usable);
  return { kind: 'recent', k: best?.k ?? (COLD_START_RULES[COLD_START_RULES.length - 1] as number) };
}

/** Policies a cold start replaces: the goals a recency rule can be chosen for. */
export function replacedInColdStart(policy: Policy): boolean {
  return policy.kind === 'coverage' || policy.kind === 'waste';
}

const sql = {
  /**
   * The logins of the backtest's windows and of the K windows before the earliest, with each
   * user's first login (from user_activity, or the earliest login read).
   */
  history: (fromMs: number, toMs: number) => ({
    text: `SELECT l.user_id, (extract(epoch FROM l.at) * 1000)::float8 AS at_ms,
                  (extract(epoch FROM least(a.first_login_at, l.at)) * 1000)::float8 AS first_ms
             FROM logins l LEFT JOIN user_activity a ON a.user_id = l.user_id
            WHERE l.at >= $1 AND l.at < $2
            ORDER BY l.at, l.user_id`,
    values: [new Date(fromMs), new Date(toMs)],
  }),
  recordPolicy: (runId: number, policy: string) => ({
    text: `UPDATE batch_runs SET policy = $2 WHERE id = $1`,
    values: [runId, policy],
  }),
};

/**
 * The planner's hook: a run of a cold start (`isColdStart` of its preparation: no model trained
 * yet, scored by the recency stand-in) whose window asks for a coverage or waste selects by the
 * recency rule that backtests best on the history before `at`, in windows of the run's horizon.
 * The run records the rule as its policy and the log says why. Any other run comes back as it is.
 */
export async function coldStartPolicy(
  deps: { pool: Pool; log: Logger },
  run: { id: number | null; window: string; at: Date; horizonMs: number; coldStart: boolean },
  policy: Policy,
): Promise<Policy> {
  if (!run.coldStart || !replacedInColdStart(policy)) return policy;
  const atMs = run.at.getTime();
  const widest = COLD_START_RULES[COLD_START_RULES.length - 1] as number;
  const fromMs = atMs - (COLD_START.backtestWindows + widest) * run.horizonMs;
  const rows = (await deps.pool.query<{ user_id: string; at_ms: number; first_ms: number }>(sql.history(fromMs, atMs))).rows;
  const ids = new Map<string, number>();
  const user = new Int32Array(rows.length);
  const at = new Float64Array(rows.length);
  const firstLoginMs: number[] = [];
  rows.forEach((row, i) => {
    let u = ids.get(row.user_id);
    if (u === undefined) {
      ids.set(row.user_id, (u = ids.size));
      firstLoginMs.push(Number(row.first_ms));
    }
    user[i] = u;
    at[i] = Number(row.at_ms);
    firstLoginMs[u] = Math.min(firstLoginMs[u] as number, Number(row.first_ms));
  });
  const figures = backtestRecencyRules({ user, at, firstLoginMs }, atMs, run.horizonMs);
  const rule = coldStartRule(policy, figures);
  if (run.id !== null) await deps.pool.query(sql.recordPolicy(run.id, formatPolicy(rule)));
  deps.log.info(
    { window: run.window, runId: run.id, goal: formatPolicy(policy), rule: formatPolicy(rule), backtest: figures },
    'cold start: no propensity model yet; selecting by the recency rule that backtests best on the history',
  );
  return rule;
}
