// Analysts' views benchmark (`npm run bench`, or `node --import tsx scripts/bench/views.ts --users 1000000 --days 30`):
// a history of N users over D days, generated in SQL in a scratch schema — logins (3 per user),
// one nightly run per UTC day selecting 2–5 % of the users (plus 1 % holdout) with its predictions
// (selected, holdout and the planner's default sample of 100 000 others), the batch sets, one
// serve per login (precomputed when a fresh set exists, else on demand with its set, or fallback) —
// then partition maintenance (the rollups), then each example query of README "For analysts: the
// views" and a "last 7 / 30 days" filter per daily view, timed. Writes reports/bench-views.json.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pino from 'pino';
import { systemClock } from '../../src/clock.ts';
import { migrate } from '../../src/db/migrate.ts';
import { createPool, type Pool } from '../../src/db/pool.ts';
import { createPartitionMaintenance, partitionName, periodStart, PARTITIONED_TABLES } from '../../src/maintenance/partitions.ts';
import { maintenanceSql } from '../../src/maintenance/sql.ts';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const log = pino({ level: 'silent' });
const DAY_MS = 86_400_000;
const README = fileURLToPath(new URL('../../README.md', import.meta.url));

export interface ExampleQuery {
  /** The view the query reads (the first documented view named in its FROM). */
  view: string;
  sql: string;
}

/** The ```sql blocks of README "For analysts: the views", each with the view it documents. */
export function readmeViewQueries(readme = readFileSync(README, 'utf8')): ExampleQuery[] {
  const start = readme.indexOf('\n## For analysts: the views');
  if (start < 0) throw new Error('README has no section "For analysts: the views"');
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const queries: ExampleQuery[] = [];
  for (const match of section.matchAll(/```sql\n([\s\S]*?)```/g)) {
    const sql = (match[1] as string).replace(/^ {2}/gm, '').trim();
    const view = /\bFROM\s+([a-z_]+)/i.exec(sql)?.[1];
    if (!view) throw new Error(`README example without FROM: ${sql}`);
    queries.push({ view, sql: sql.replace(/;\s*$/, '') });
  }
  return queries;
}

/** "Last N days" filters a dashboard would send, per daily and per-run view. */
function periodQueries(days: number): ExampleQuery[] {
  const byDay = ['waste_by_day', 'compute_cost_by_day', 'coverage_by_day', 'login_coverage_by_day', 'staleness_by_day', 'latency_by_day', 'missed_interactions_by_day'];
  const byRun = ['waste_by_run', 'coverage_by_run'];
  return [
    ...byDay.map((view) => ({ view, sql: `SELECT * FROM ${view} WHERE day >= current_date - ${days}` })),
    ...byRun.map((view) => ({ view, sql: `SELECT * FROM ${view} WHERE scheduled_for >= now() - interval '${days} days'` })),
  ];
}

function flag(args: string[], name: string, fallback: number): number {
  const at = args.indexOf(name);
  const value = at >= 0 ? Number(args[at + 1]) : fallback;
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer, got ${args[at + 1]}`);
  return value;
}

async function timed<T>(work: () => Promise<T>): Promise<{ result: T; seconds: number }> {
  const started = performance.now();
  const result = await work();
  return { result, seconds: +((performance.now() - started) / 1000).toFixed(3) };
}

/** Partitions for the whole history, made before the rows arrive (as maintenance would have, day by day). */
async function createHistoryPartitions(pool: Pool, from: Date, to: Date): Promise<void> {
  for (const { table, period } of PARTITIONED_TABLES) {
    for (let cell = periodStart(from, period); cell < to; cell = periodStart(cell, period, 1)) {
      await pool.query(maintenanceSql.createPartition(table, partitionName(table, period, cell), cell, periodStart(cell, period, 1)));
    }
  }
}

// Each step one statement over the whole history. $1 users, $2 first day (UTC midnight), $3 days.
// Instants come from hashint4 of the row's numbers, so a run is repeatable but not regular.
const GENERATE: [string, string][] = [
  ['logins', `INSERT INTO logins (user_id, at)
     SELECT 'u' || g, $2::timestamptz + make_interval(secs => ((hashint4(g * 3 + k) & 2147483647) % (extract(epoch FROM now() - $2::timestamptz)::int)))
       FROM generate_series(1, $1::int) g, generate_series(0, 2) k
     ON CONFLICT DO NOTHING`],
  ['user_activity', `INSERT INTO user_activity (user_id, first_login_at, last_login_at, login_count, known_since)
     SELECT user_id, min(at), max(at), count(*), min(at) FROM logins GROUP BY user_id`],
  ['windows', `INSERT INTO windows (name, cron, timezone, horizon_ms, ttl_ms, policy) VALUES ('nightly', '0 0 * * *', 'UTC', 86400000, 86400000, 'coverage:0.8')`],
  // One run per UTC midnight, today's included (still fresh: its sets are being served).
  ['batch_runs', `INSERT INTO batch_runs (window_name, scheduled_for, started_at, finished_at, expires_at, policy, status, horizon_ms,
                                          candidates, selected, holdout, precomputed, shards, prediction_sample_rate)
     SELECT 'nightly', s, s, s + interval '40 minutes', s + interval '1 day', 'coverage:0.8', 'completed', 86400000,
            $1::int, ($1::int * (20 + d % 31)) / 1000, $1::int / 100, ($1::int * (20 + d % 31)) / 1000 + $1::int / 100, 1, 0.1
       FROM generate_series(0, $3::int) d, LATERAL (SELECT $2::timestamptz + d * interval '1 day' AS s) x`],
  // Per run: `selected` users then `holdout` users drawn by hash (duplicates folded), and
  // 100 000 sampled others standing for the rest (weight).
  ['predictions', `INSERT INTO predictions (run_id, user_id, p, selected, holdout, chunk_no, created_at, weight)
     SELECT run_id, user_id, p, selected, holdout, CASE WHEN selected OR holdout THEN 0 END, created_at,
            CASE WHEN selected OR holdout THEN 1 ELSE greatest(1, ($1::int - n_sel) / 100000.0) END
       FROM (
         SELECT DISTINCT ON (b.id, g) b.id AS run_id, 'u' || g AS user_id, b.started_at AS created_at, b.selected + b.holdout AS n_sel,
                kind = 0 AS selected, kind = 1 AS holdout,
                CASE kind WHEN 0 THEN 0.3 + 0.7 * ((hashint4(g + b.id::int) & 65535) / 65536.0)
                          ELSE 0.3 * ((hashint4(g + b.id::int) & 65535) / 65536.0) END AS p
           FROM batch_runs b
           CROSS JOIN LATERAL (
             SELECT 0 AS kind, 1 + (hashint4(i * 7919 + b.id::int * 104729) & 2147483647) % $1::int AS g FROM generate_series(1, b.selected) i
             UNION ALL
             SELECT 1, 1 + (hashint4(i * 6151 + b.id::int * 3079) & 2147483647) % $1::int FROM generate_series(1, b.holdout) i
             UNION ALL
             SELECT 2, 1 + (hashint4(i * 1543 + b.id::int * 769) & 2147483647) % $1::int FROM generate_series(1, least(100000, $1::int)) i
           ) pick
          ORDER BY b.id, g, kind
       ) p`],
  ['recommendations (batch)', `INSERT INTO recommendations (id, user_id, source, run_id, holdout, computed_at, expires_at, model_version, compute_ms, item_ids, scores)
     SELECT gen_random_uuid(), p.user_id, 'batch', p.run_id, p.holdout,
            b.started_at + make_interval(secs => (hashtext(p.user_id) & 2147483647) % 2400), b.expires_at, 'item-cf-bench',
            2 + (hashtext(p.user_id) & 1023) / 256.0,
            ARRAY['i' || (hashtext(p.user_id) & 4095), 'i17', 'i42', 'i7', 'i1001', 'i256', 'i3', 'i99', 'i500', 'i12'],
            '{0.9,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1,0.05}'
       FROM predictions p JOIN batch_runs b ON b.id = p.run_id
      WHERE p.selected OR p.holdout`],
  // Every login, with the fresh batch set it finds (if any).
  // Every login, with the fresh batch set it finds (if any): runs start at UTC midnight and last a
  // day, so the set is the one of the login's day (a hash join, not a probe per login).
  ['judged logins', `CREATE TEMP TABLE judged AS
     SELECT l.user_id, l.at, r.id AS set_id, r.computed_at AS set_at,
            CASE WHEN r.id IS NOT NULL THEN 'precomputed' WHEN hashtext(l.user_id || l.at::text) & 15 = 0 THEN 'fallback' ELSE 'on_demand' END AS source,
            gen_random_uuid() AS serve_id, gen_random_uuid() AS on_demand_id
       FROM logins l
       LEFT JOIN (SELECT r.id, r.user_id, r.computed_at, b.scheduled_for
                    FROM recommendations r JOIN batch_runs b ON b.id = r.run_id WHERE r.source = 'batch') r
         ON r.user_id = l.user_id AND r.scheduled_for = date_trunc('day', l.at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AND r.computed_at <= l.at`],
  ['recommendations (on demand)', `INSERT INTO recommendations (id, user_id, source, run_id, holdout, computed_at, expires_at, model_version, compute_ms, item_ids, scores, first_served_at, serve_count)
     SELECT on_demand_id, user_id, 'on_demand', NULL, false, at, at + interval '1 day', 'item-cf-bench', 20 + (hashtext(user_id) & 1023) / 32.0,
            '{i1,i2,i3,i4,i5,i6,i7,i8,i9,i10}', '{0.9,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1,0.05}', at, 1
       FROM judged WHERE source = 'on_demand'`],
  // missed_interactions (0015): none for a set computed at the login, 0–3 for a precomputed one,
  // NULL for fallback answers.
  ['serves', `INSERT INTO serves (id, user_id, at, source, recommendation_id, staleness_ms, latency_ms, reason, missed_interactions)
     SELECT serve_id, user_id, at, source,
            CASE source WHEN 'precomputed' THEN set_id WHEN 'on_demand' THEN on_demand_id END,
            CASE source WHEN 'precomputed' THEN (extract(epoch FROM at - set_at) * 1000)::bigint WHEN 'on_demand' THEN 0 END,
            CASE source WHEN 'precomputed' THEN 2 + (hashtext(serve_id::text) & 255) / 64.0
                        WHEN 'on_demand' THEN 25 + (hashtext(serve_id::text) & 1023) / 16.0 ELSE 150 END,
            CASE source WHEN 'fallback' THEN 'latency_budget' END,
            CASE source WHEN 'precomputed' THEN (hashtext(serve_id::text) & 7) % 4 WHEN 'on_demand' THEN 0 END
       FROM judged`],
  ['first serves of batch sets', `UPDATE recommendations r SET first_served_at = s.first_at, serve_count = s.n
       FROM (SELECT set_id, min(at) AS first_at, count(*)::int AS n FROM judged WHERE set_id IS NOT NULL GROUP BY 1) s
      WHERE r.id = s.set_id AND r.source = 'batch'`],
  ['propensity model', `INSERT INTO propensity_models (version, kind, train_from, train_to, window_ms, feature_names, parameters, calibration, metrics)
     SELECT 'bench-v1', 'logistic', $2::timestamptz - interval '28 days', $2::timestamptz, 86400000, '{recency}', '{}', '{}',
            jsonb_build_object('reliability', jsonb_agg(jsonb_build_object('decile', d, 'count', 100000, 'minPredicted', (d - 1) / 10.0,
              'maxPredicted', d / 10.0, 'meanPredicted', (d - 0.5) / 10.0, 'observedRate', (d - 0.5) / 10.5)))
       FROM generate_series(1, 10) d WHERE $1::int > 0`],
  ['analyze', `ANALYZE logins, user_activity, batch_runs, predictions, recommendations, serves`],
];

export async function main(args: string[] = process.argv.slice(2)) {
  const users = flag(args, '--users', 1_000_000);
  const days = flag(args, '--days', 30);
  const repeats = flag(args, '--repeats', 3);
  // --schema S: time a history generated before (kept with --keep-schema), migrated first.
  const reuse = args.includes('--schema') ? args[args.indexOf('--schema') + 1] : undefined;
  if (reuse !== undefined && !/^bench_views_[0-9a-f]{8}$/.test(reuse)) throw new Error(`--schema takes a schema this benchmark kept (bench_views_…), got ${reuse}`);
  const schema = reuse ?? `bench_views_${randomUUID().slice(0, 8)}`;
  const pool = createPool({ databaseUrl: DATABASE_URL, schema, log, max: 2, applicationName: 'bench-views' });
  const keep = args.includes('--keep-schema') || reuse !== undefined;
  try {
    const migrated = await timed(() => migrate({ pool, schema, log }));
    const now = new Date();
    const first = periodStart(new Date(now.getTime() - days * DAY_MS), 'day');
    if (reuse === undefined) await createHistoryPartitions(pool, new Date(first.getTime() - 31 * DAY_MS), new Date(now.getTime() + 3 * DAY_MS));
    const generation: Record<string, number> = {};
    for (const [step, text] of reuse === undefined ? GENERATE : []) {
      const values = [users, first.toISOString(), days].slice(0, (text.match(/\$\d/g) ?? []).reduce((n, p) => Math.max(n, Number(p.slice(1))), 0));
      generation[step] = (await timed(() => pool.query(text, values))).seconds;
      process.stderr.write(`views bench: ${step} ${generation[step]} s\n`);
    }
    const rows = (await pool.query(
      `SELECT (SELECT count(*) FROM logins)::int AS logins, (SELECT count(*) FROM serves)::int AS serves,
              (SELECT count(*) FROM recommendations)::int AS recommendations, (SELECT count(*) FROM predictions)::int AS predictions,
              (SELECT count(*) FROM batch_runs)::int AS runs`,
    )).rows[0];
    // The rollups a scheduler would have made by now; a long retention so nothing is dropped.
    const maintenance = createPartitionMaintenance({ pool, clock: systemClock, log, retentionMs: 3650 * DAY_MS });
    const maintain = await timed(() => maintenance.run());
    const again = await timed(() => maintenance.run());
    // This schema's tables only: a bare VACUUM would visit every schema of the database.
    await pool.query('VACUUM ANALYZE logins, user_activity, batch_runs, predictions, recommendations, serves');

    const queries = [
      ...readmeViewQueries().map((q) => ({ ...q, kind: 'readme example' })),
      ...periodQueries(7).map((q) => ({ ...q, kind: 'last 7 days' })),
      ...periodQueries(30).map((q) => ({ ...q, kind: 'last 30 days' })),
      { view: 'recommendation_life', kind: 'whole history', sql: `SELECT source, holdout, count(*) FILTER (WHERE wasted) AS wasted, count(*) FILTER (WHERE ended) AS ended FROM recommendation_life GROUP BY 1, 2` },
      { view: 'recommendation_items', kind: 'one run', sql: `SELECT item_id, count(*) AS sets FROM recommendation_items WHERE rank <= 10 AND run_id = (SELECT max(id) FROM batch_runs) GROUP BY item_id ORDER BY sets DESC LIMIT 20` },
    ];
    const timings = [];
    for (const query of queries) {
      const runs: number[] = [];
      let resultRows = 0;
      for (let i = 0; i < repeats; i++) {
        const { result, seconds } = await timed(() => pool.query(query.sql));
        resultRows = result.rowCount ?? 0;
        runs.push(seconds);
      }
      const sorted = [...runs].sort((a, b) => a - b);
      timings.push({ ...query, rows: resultRows, firstSeconds: runs[0], medianSeconds: sorted[Math.floor(sorted.length / 2)] });
      process.stderr.write(`views bench: ${query.kind} ${query.view} ${sorted[Math.floor(sorted.length / 2)]} s\n`);
    }
    return {
      users,
      days,
      at: now.toISOString(),
      ...rows,
      generationSeconds: generation,
      migration: { applied: migrated.result, seconds: migrated.seconds },
      maintenanceSeconds: { first: maintain.seconds, next: again.seconds },
      rollups: maintain.result.actions.filter((a) => a.kind === 'rollup'),
      repeats,
      timings,
      ...(keep ? { schema } : {}),
    };
  } finally {
    if (!keep) await pool.query(`DROP SCHEMA ${schema} CASCADE`).catch(() => undefined);
    await pool.end();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const report = await main();
  mkdirSync('reports', { recursive: true });
  writeFileSync('reports/bench-views.json', JSON.stringify(report, null, 2));
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
}
