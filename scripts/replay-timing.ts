/**
 * The replay's model row alone, nightly or timed (issue 15 item 4): `prewarm replay` also replays
 * `all` and `none`, which timing does not change and which double the wall time. Keeps the schema
 * and reads from it what the timing target is judged on:
 * - age p50/p95 of the served precomputed sets (serves.staleness_ms, source precomputed);
 * - first logins served a precomputed set: active known users of each day whose first login of
 *   the day was answered from a precomputed set, whichever run's.
 *
 *   npx tsx scripts/replay-timing.ts --logins FILE --interactions FILE [--timing predicted]
 *     [--timing-slot 1h] [--timing-risk 0.02] [--policy coverage:0.8] [--retrain-propensity-every 7d]
 *     [--interaction-feed import] [--from DAY] [--to DAY]
 *
 * Database and Redis as the CLI's (DATABASE_URL, REDIS_URL). Prints one JSON object.
 */
import { parseArgs } from 'node:util';
import { parseDurationFlag, parsePolicyFlag } from '../src/cli/flags.ts';
import { createCliContext } from '../src/cli/runtime.ts';
import { createPool } from '../src/db/pool.ts';
import { prepareModelScorer, retrainModelScorer } from '../src/replay/propensity.ts';
import { replayPolicy } from '../src/replay/replay.ts';
import { loadReplayData, policyFigures } from '../src/replay/run.ts';

const DAY = 86_400_000;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      logins: { type: 'string' },
      interactions: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      policy: { type: 'string', default: 'coverage:0.8' },
      timing: { type: 'string', default: 'midnight' },
      'timing-slot': { type: 'string', default: '1h' },
      'timing-risk': { type: 'string', default: '0.02' },
      'retrain-propensity-every': { type: 'string', default: '7d' },
      'interaction-feed': { type: 'string', default: 'import' },
    },
  });
  const context = createCliContext();
  const log = context.log.child({}, { level: 'warn' });
  const data = await loadReplayData(values.logins as string, values.interactions as string);
  const first = data.logins[0]?.at.getTime() as number;
  const last = data.logins.at(-1)?.at.getTime() as number;
  const from = new Date(values.from ? Date.parse(values.from) : Math.floor(first / DAY) * DAY + 28 * DAY);
  const to = new Date(values.to ? Date.parse(values.to) : Math.floor(last / DAY) * DAY + DAY);
  const timed = values.timing === 'predicted';
  const policy = parsePolicyFlag(values.policy as string);
  const retrainEvery = parseDurationFlag(values['retrain-propensity-every'] as string, '--retrain-propensity-every');
  const feed = values['interaction-feed'] === 'api' ? 'api' : 'import';
  const run = await replayPolicy(data, 'model', policy, {
    databaseUrl: context.config.databaseUrl,
    redisUrl: context.config.redisUrl,
    log,
    from,
    to,
    window: '1d',
    prepareScorer: prepareModelScorer,
    retrainScorer: { every: retrainEvery, retrain: retrainModelScorer },
    keepSchemas: true,
    interactionFeed: feed,
    refreshBehind: 'never',
    ...(timed ? { timing: { slotMs: parseDurationFlag(values['timing-slot'] as string, '--timing-slot'), risk: Number(values['timing-risk']) } } : {}),
  });
  const pool = createPool({ databaseUrl: context.config.databaseUrl, schema: run.schema, log, max: 2, applicationName: 'sim-timing' });
  try {
    const age = (
      await pool.query<{ p50: number; p95: number; n: number }>(
        `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY staleness_ms) / 3600000 AS p50,
                percentile_cont(0.95) WITHIN GROUP (ORDER BY staleness_ms) / 3600000 AS p95, count(*)::int AS n
           FROM serves WHERE source = 'precomputed' AND at >= $1 AND at < $2`,
        [from, to],
      )
    ).rows[0];
    const firsts = (
      await pool.query<{ active: number; served: number }>(
        `WITH firsts AS (
           SELECT DISTINCT ON (s.user_id, date_trunc('day', s.at AT TIME ZONE 'UTC')) s.user_id, s.at, s.source
             FROM serves s JOIN user_activity ua ON ua.user_id = s.user_id
            WHERE s.at >= $1 AND s.at < $2 AND ua.first_login_at < date_trunc('day', s.at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
            ORDER BY s.user_id, date_trunc('day', s.at AT TIME ZONE 'UTC'), s.at)
         SELECT count(*)::int AS active, count(*) FILTER (WHERE source = 'precomputed')::int AS served FROM firsts`,
        [from, to],
      )
    ).rows[0];
    const sources = (await pool.query<{ source: string; n: number }>(`SELECT source, count(*)::int AS n FROM serves WHERE at >= $1 AND at < $2 GROUP BY 1 ORDER BY 1`, [from, to])).rows;
    const figures = policyFigures('model', run);
    console.log(
      JSON.stringify({
        timing: timed ? { slot: values['timing-slot'], risk: Number(values['timing-risk']) } : 'midnight',
        from,
        to,
        schema: run.schema,
        wallMs: Math.round(run.wallMs),
        precomputes: figures.precomputes,
        wasted: figures.wasted,
        waste: figures.waste,
        coverage: figures.coverage,
        loginCoverage: figures.loginCoverage,
        onDemand: figures.onDemand,
        precomputedServes: age?.n,
        ageP50h: age?.p50,
        ageP95h: age?.p95,
        firstLoginsServedPrecomputed: firsts ? firsts.served / firsts.active : null,
        firstLogins: firsts,
        serves: Object.fromEntries(sources.map((row) => [row.source, row.n])),
      }),
    );
  } finally {
    await pool.end();
  }
}

await main();
