// The worker's and the scheduler's /metrics (PREWARM_METRICS_PORT), as real processes: each passes
// `promtool check metrics`, has its own metrics and Node's defaults, honours PREWARM_ADMIN_TOKEN,
// and a metrics port in use stops the process at start-up with one line.
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../src/clock.ts';
import { createSchedulerMetrics } from '../src/planner/metrics.ts';
import { createRunStore } from '../src/planner/runs.ts';
import { createPrecomputeMetrics } from '../src/precompute/metrics.ts';
import { seedHistory } from './dashboard-history.ts';
import { TEST_DATABASE_URL, TEST_REDIS_URL, createTestDb, createTestRedis, silentLog, type TestDb, type TestRedis } from './helpers.ts';
import { freePort } from './support/own-servers.ts';
import { spawnPrewarm, type PrewarmProcess } from './support/prewarm-process.ts';

const ADMIN_TOKEN = 'metrics-admin-token-0123456789';

function promtoolCheck(body: string): { output: string; status: number | null } {
  const found = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' });
  if (found.status !== 0) throw new Error('promtool is not installed: apt-get install -y prometheus (.ci/run does it)');
  const checked = spawnSync(found.stdout.trim(), ['check', 'metrics'], { input: body, encoding: 'utf8' });
  return { output: `${checked.stdout}${checked.stderr}`, status: checked.status };
}

/** Polls `url` until it answers 200 (the process exits or 20 s pass: the test fails). */
async function scrape(url: string, child: PrewarmProcess, headers: Record<string, string> = {}): Promise<string> {
  const giveUpAt = Date.now() + 20_000;
  for (;;) {
    if (!child.alive()) throw new Error(`the process exited before serving /metrics:\n${child.stderr()}`);
    try {
      const response = await fetch(url, { headers, signal: AbortSignal.timeout(3_000) });
      if (response.status === 200) return await response.text();
    } catch {
      // not listening yet
    }
    if (Date.now() > giveUpAt) throw new Error(`${url} did not answer within 20 s:\n${child.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function types(body: string): Record<string, string> {
  return Object.fromEntries([...body.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
}

function expectConventions(body: string): void {
  const checked = promtoolCheck(body);
  expect(checked.output).toBe('');
  expect(checked.status).toBe(0);
  for (const [name, type] of Object.entries(types(body))) {
    if (name.endsWith('_total')) expect(type, name).toBe('counter');
    else expect(type, name).not.toBe('counter');
  }
  expect(types(body)).toMatchObject({ process_cpu_seconds_total: 'counter', nodejs_heap_size_used_bytes: 'gauge', nodejs_active_handles: 'gauge' });
}

describe('worker and scheduler /metrics', () => {
  let db: TestDb;
  let redis: TestRedis;
  let base: Record<string, string>;
  const children: PrewarmProcess[] = [];

  beforeAll(async () => {
    [db, redis] = await Promise.all([createTestDb(), createTestRedis()]);
    base = {
      DATABASE_URL: TEST_DATABASE_URL,
      REDIS_URL: TEST_REDIS_URL,
      PREWARM_DB_SCHEMA: db.schema,
      PREWARM_QUEUE_PREFIX: redis.prefix,
      PREWARM_CACHE_PREFIX: `${redis.prefix}:cache:`,
      PREWARM_LOG_LEVEL: 'error',
    };
  });
  afterAll(async () => {
    await Promise.all(children.map((child) => child.stop()));
    await Promise.all([db?.drop(), redis?.drop()]);
  });

  it('worker: promtool-clean, its own metrics, bearer PREWARM_ADMIN_TOKEN', { timeout: 30_000 }, async () => {
    const port = await freePort();
    const worker = spawnPrewarm(['worker'], { ...base, PREWARM_METRICS_PORT: String(port), PREWARM_ADMIN_TOKEN: ADMIN_TOKEN });
    children.push(worker);
    const url = `http://127.0.0.1:${port}/metrics`;
    const body = await scrape(url, worker, { authorization: `Bearer ${ADMIN_TOKEN}` });
    expectConventions(body);
    expect(types(body)).toMatchObject({
      prewarm_chunks_total: 'counter',
      prewarm_users_precomputed_total: 'counter',
      prewarm_users_failed_total: 'counter',
      prewarm_chunk_duration_seconds: 'histogram',
      prewarm_chunk_recommender_duration_seconds: 'histogram',
      prewarm_queue_jobs: 'gauge',
    });
    expect(body).toContain('prewarm_queue_jobs{queue="precompute",state="waiting"} 0');
    expect((await fetch(url)).status).toBe(401);
    expect((await fetch(url, { headers: { authorization: 'Bearer wrong-token-0123456789abcdef' } })).status).toBe(401);
    expect((await fetch(`http://127.0.0.1:${port}/other`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status).toBe(404);
  });

  it('scheduler: promtool-clean, its own metrics', { timeout: 30_000 }, async () => {
    const port = await freePort();
    const scheduler = spawnPrewarm(['scheduler'], { ...base, PREWARM_METRICS_PORT: String(port) });
    children.push(scheduler);
    const body = await scrape(`http://127.0.0.1:${port}/metrics`, scheduler);
    expectConventions(body);
    expect(types(body)).toMatchObject({
      prewarm_runs_planned_total: 'counter',
      prewarm_run_planning_failures_total: 'counter',
      prewarm_planner_duration_seconds: 'histogram',
      prewarm_chunks_swept_total: 'counter',
      prewarm_partition_maintenance_passes_total: 'counter',
      prewarm_propensity_model_info: 'gauge',
      prewarm_propensity_model_age_seconds: 'gauge',
      prewarm_queue_jobs: 'gauge',
    });
    // No model trained in this schema yet.
    expect(body).toContain('prewarm_propensity_model_age_seconds Nan');
    expect(body).toContain('prewarm_queue_jobs{queue="precompute",state="active"} 0');
    // Stopped by SIGTERM, it closes the metrics server among its steps and exits 0.
    expect(await scheduler.stop()).toBe(0);
  });

  it('worker: a metrics port in use stops start-up with one line', { timeout: 30_000 }, async () => {
    const blocker = net.createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    try {
      const worker = spawnPrewarm(['worker'], { ...base, PREWARM_METRICS_PORT: String(port) });
      children.push(worker);
      const timer = setTimeout(() => worker.child.kill('SIGKILL'), 25_000);
      const code = await worker.exited;
      clearTimeout(timer);
      expect(typeof code === 'number' && code !== 0, `exit ${code}`).toBe(true);
      const messages = worker.stderr().trim().split('\n').filter((line) => line.startsWith('prewarm'));
      expect(messages).toHaveLength(1);
      expect(messages[0]).toMatch(new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(PREWARM_METRICS_PORT, PREWARM_HOST\\): the port is in use`));
    } finally {
      blocker.close();
    }
  });
});

describe('worker metrics record chunks by outcome', () => {
  it('done, failed, skipped; users; durations in seconds', async () => {
    const metrics = createPrecomputeMetrics({ log: silentLog, defaultMetrics: false });
    metrics.chunkFinished('morning', { skipped: false, precomputed: 48, failed: 2, computeMs: 1_500 }, 2);
    metrics.chunkFinished('morning', { skipped: true, precomputed: 0, failed: 0, computeMs: 0 }, 0.01);
    metrics.chunkFinished('morning', { skipped: false, precomputed: 0, failed: 50, computeMs: 0 }, 0.02);
    metrics.chunkFailed('evening', 50, 3);
    const body = await metrics.registry.metrics();
    expect(body).toContain('prewarm_chunks_total{window="morning",outcome="done"} 1');
    expect(body).toContain('prewarm_chunks_total{window="morning",outcome="skipped"} 1');
    expect(body).toContain('prewarm_chunks_total{window="morning",outcome="failed"} 1');
    expect(body).toContain('prewarm_chunks_total{window="evening",outcome="failed"} 1');
    expect(body).toContain('prewarm_users_precomputed_total{window="morning"} 48');
    expect(body).toContain('prewarm_users_failed_total{window="morning"} 52');
    expect(body).toContain('prewarm_users_failed_total{window="evening"} 50');
    expect(body).toContain('prewarm_chunk_recommender_duration_seconds_sum{window="morning"} 1.5');
    expect(body).toContain('prewarm_chunk_recommender_duration_seconds_count{window="morning"} 1');
    expect(body).toContain('prewarm_chunk_duration_seconds_count{window="morning"} 3');
    expect(promtoolCheck(body).output).toBe('');
  });

  it('scheduler: each window\'s last finished run from Postgres (outcome, sets, failures, waste, duration)', async () => {
    const history = await createTestDb();
    try {
      await seedHistory(history.pool);
      const metrics = createSchedulerMetrics({ clock: systemClock, log: silentLog, defaultMetrics: false, lastRuns: () => createRunStore({ pool: history.pool }).lastOutcomes() });
      const body = await metrics.registry.metrics();
      // The seeded nightly window's newest run: 4 of 5 precomputed, 1 failed, 1 of 4 sets wasted, finished 6 min after its occurrence.
      expect(body).toContain('prewarm_last_run_info{window="nightly",status="completed"} 1');
      expect(body).toContain('prewarm_last_run_precomputed_sets{window="nightly"} 4');
      expect(body).toContain('prewarm_last_run_failed_users{window="nightly"} 1');
      expect(body).toContain('prewarm_last_run_wasted_sets{window="nightly"} 1');
      expect(body).toContain('prewarm_last_run_duration_seconds{window="nightly"} 360');
      expect(promtoolCheck(body).output).toBe('');
    } finally {
      await history.drop();
    }
  });
});
