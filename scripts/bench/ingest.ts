// Interactions API benchmark: `POST /v1/interactions` of a running `prewarm serve`, 1,000
// interactions per request, measured from the first request until every acknowledged row is in
// Postgres; beside it, a bare text COPY of the same number of rows into the same table of a
// fresh schema, measured in the same run.
//   npx tsx scripts/bench/ingest.ts [--requests 300] [--connections 8]
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { from as copyFrom } from 'pg-copy-streams';
import pino from 'pino';
import { migrate } from '../../src/db/migrate.ts';
import { createPool, type Pool } from '../../src/db/pool.ts';
import { printTable, startServerProcess, uniqueName } from './lib.ts';

const TOKEN = 'bench-token-0123456789abcdef';
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PER_REQUEST = 1_000;
const USERS = 100_000;
const ITEMS = 5_000;
const T0 = Date.parse('2024-03-01T00:00:00Z');
const log = pino({ level: 'warn' });

/** Interaction k of request n: distinct (user, at, item) for every (n, k), spread over users and items. */
function interaction(n: number, k: number): { userId: string; itemId: string; at: string; weight: number } {
  const i = n * PER_REQUEST + k;
  return { userId: `u${(i * 7_919) % USERS}`, itemId: `i${(i * 104_729) % ITEMS}`, at: new Date(T0 + i).toISOString(), weight: 1 + (k % 3) };
}

async function count(pool: Pool): Promise<number> {
  return Number((await pool.query('SELECT count(*) AS n FROM interactions')).rows[0].n);
}

export async function main(argv = process.argv.slice(2)) {
  const { values } = parseArgs({ args: argv, options: { requests: { type: 'string', default: '300' }, connections: { type: 'string', default: '8' } } });
  const requests = Number(values.requests);
  const connections = Number(values.connections);
  const apiSchema = uniqueName('bench_ingest');
  const copySchema = uniqueName('bench_copy');
  const apiPool = createPool({ databaseUrl: DATABASE_URL, schema: apiSchema, log });
  const copyPool = createPool({ databaseUrl: DATABASE_URL, schema: copySchema, log });
  let server: { stop(): Promise<void> } | undefined;
  try {
    await migrate({ pool: apiPool, schema: apiSchema, log });
    await migrate({ pool: copyPool, schema: copySchema, log });
    const prewarm = await startServerProcess([process.execPath, 'src/cli/bin.mjs', 'serve'], {
      DATABASE_URL,
      REDIS_URL,
      PREWARM_DB_SCHEMA: apiSchema,
      PREWARM_CACHE_PREFIX: `${apiSchema}:`,
      PREWARM_LOG_LEVEL: 'info',
      PORT: '0',
      PREWARM_API_TOKENS: TOKEN,
    });
    server = prewarm;

    let next = 0;
    const started = performance.now();
    const result = await autocannon({
      url: prewarm.url,
      connections,
      amount: requests,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      requests: [
        {
          method: 'POST',
          path: '/v1/interactions',
          setupRequest: (request) => {
            const n = next++;
            return { ...request, body: JSON.stringify({ interactions: Array.from({ length: PER_REQUEST }, (_, k) => interaction(n, k)) }) };
          },
        },
      ],
    });
    const acknowledged = result['2xx'] * PER_REQUEST;
    // Acknowledged means buffered: the clock stops when the last of them is in Postgres.
    let written = await count(apiPool);
    while (written < acknowledged && performance.now() - started < 300_000) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      written = await count(apiPool);
    }
    const apiSeconds = (performance.now() - started) / 1_000;
    await prewarm.stop();
    server = undefined;

    // The same rows, as one COPY from this process into an empty table with the same indexes.
    const rows = written;
    const lines = function* () {
      for (let i = 0; i < rows; i += PER_REQUEST) {
        let chunk = '';
        for (let k = 0; k < PER_REQUEST && i + k < rows; k++) {
          const row = interaction(i / PER_REQUEST, k);
          chunk += `${row.userId},${row.itemId},${row.at},${row.weight}\n`;
        }
        yield chunk;
      }
    };
    const client = await copyPool.connect();
    const copyStarted = performance.now();
    try {
      await pipeline(Readable.from(lines()), client.query(copyFrom('COPY interactions (user_id, item_id, at, weight) FROM STDIN (FORMAT csv)')));
    } finally {
      client.release();
    }
    const copySeconds = (performance.now() - copyStarted) / 1_000;

    const report = {
      date: new Date().toISOString(),
      machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GB, Node ${process.version}`,
      api: {
        requests: result['2xx'],
        refused: result.non2xx,
        errors: result.errors,
        acknowledged,
        written,
        seconds: +apiSeconds.toFixed(2),
        rowsPerSecond: Math.round(written / apiSeconds),
        p50Ms: result.latency.p50,
        p99Ms: result.latency.p99,
      },
      bareCopy: { rows, seconds: +copySeconds.toFixed(2), rowsPerSecond: Math.round(rows / copySeconds) },
      ratio: +(written / apiSeconds / (rows / copySeconds)).toFixed(2),
    };
    printTable([
      { path: 'POST /v1/interactions → Postgres', 'rows/s': report.api.rowsPerSecond, 'p50 ms': report.api.p50Ms, 'p99 ms': report.api.p99Ms, 'vs COPY': report.ratio },
      { path: 'bare COPY', 'rows/s': report.bareCopy.rowsPerSecond, 'p50 ms': '', 'p99 ms': '', 'vs COPY': 1 },
    ]);
    if (written !== acknowledged) throw new Error(`${acknowledged} interactions acknowledged but ${written} written`);
    mkdirSync('reports', { recursive: true });
    writeFileSync('reports/bench-ingest.json', `${JSON.stringify(report, null, 2)}\n`);
    return report;
  } finally {
    await server?.stop();
    await apiPool.query(`DROP SCHEMA IF EXISTS ${apiSchema} CASCADE`).catch(() => undefined);
    await copyPool.query(`DROP SCHEMA IF EXISTS ${copySchema} CASCADE`).catch(() => undefined);
    await apiPool.end();
    await copyPool.end();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(await main(), null, 2)}\n`);
}
