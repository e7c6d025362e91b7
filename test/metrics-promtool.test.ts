// The API's /metrics output as Prometheus's own linter sees it: `promtool check metrics` (Debian
// package `prometheus`; .ci/run installs it when missing) must find nothing to say, so that names,
// types, `_total` suffixes and units follow Prometheus conventions.
import { spawnSync } from 'node:child_process';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/api/app.ts';
import { createApiMetrics } from '../src/api/metrics.ts';
import type { RecommendationService } from '../src/serving/service.ts';
import { silentLog } from './helpers.ts';

const ADMIN_TOKEN = 'admin-token-0123456789abcdef';

function promtool(): string | undefined {
  const found = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' });
  return found.status === 0 ? found.stdout.trim() : undefined;
}

describe('/metrics', () => {
  let app: FastifyInstance;
  let inFlight = 3;

  beforeAll(async () => {
    // Default metrics on, as `prewarm serve` has them; a stub service, since only the exposition matters.
    const metrics = createApiMetrics({ pendingEvents: () => 7 });
    metrics.observeServe('precomputed', 2, undefined, { stalenessMs: 1_800_000, coalesced: false, missedInteractions: 3 });
    metrics.observeServe('on_demand', 40, undefined, { stalenessMs: 0, coalesced: true, missedInteractions: 0 });
    metrics.observeServe('fallback', 150, 'latency_budget');
    metrics.refusedForFullBuffer.inc();
    const service = {
      getRecommendations: () => Promise.reject(new Error('not used')),
      inFlight: () => inFlight,
      admitted: () => inFlight,
      close: () => Promise.resolve(),
    } satisfies RecommendationService;
    app = await buildApp({
      service,
      metrics,
      log: silentLog,
      options: { apiTokens: ['service-token-0123456789abcdef'], adminToken: ADMIN_TOKEN, defaultLimit: 10, maxLimit: 100 },
      readiness: {},
    });
  });
  afterAll(async () => app.close());

  async function scrape(): Promise<string> {
    const response = await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(response.statusCode).toBe(200);
    return response.body;
  }

  it('passes promtool check metrics', async () => {
    const binary = promtool();
    if (!binary) throw new Error('promtool is not installed: apt-get install -y prometheus (.ci/run does it)');
    const body = await scrape();
    const checked = spawnSync(binary, ['check', 'metrics'], { input: body, encoding: 'utf8' });
    expect(`${checked.stdout}${checked.stderr}`).toBe('');
    expect(checked.status).toBe(0);
  });

  it("keeps Node's default metric names and has ours", async () => {
    inFlight = 5;
    const body = await scrape();
    const types = Object.fromEntries([...body.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
    // Stock Node.js dashboards read these names, unprefixed.
    expect(types).toMatchObject({
      process_cpu_seconds_total: 'counter',
      process_resident_memory_bytes: 'gauge',
      nodejs_eventloop_lag_seconds: 'gauge',
      nodejs_heap_size_used_bytes: 'gauge',
      nodejs_active_handles: 'gauge',
      nodejs_gc_duration_seconds: 'histogram',
      prewarm_serves_total: 'counter',
      prewarm_serve_latency_seconds: 'histogram',
      prewarm_on_demand_in_flight: 'gauge',
      prewarm_pending_events: 'gauge',
      prewarm_event_buffer_refusals_total: 'counter',
      prewarm_on_demand_coalesced_total: 'counter',
      prewarm_served_set_age_seconds: 'histogram',
      prewarm_served_set_missed_interactions: 'histogram',
    });
    for (const [name, type] of Object.entries(types)) {
      if (name.endsWith('_total')) expect(type, name).toBe('counter');
      else expect(type, name).not.toBe('counter');
    }
    expect(Object.keys(types).filter((name) => name.startsWith('prewarm_nodejs') || name.startsWith('prewarm_process'))).toEqual([]);
    expect(body).toContain('prewarm_serves_total{source="fallback",reason="latency_budget"} 1');
    expect(body).toContain('prewarm_serve_latency_seconds_bucket{le="0.0025",source="precomputed"} 1');
    expect(body).toContain('prewarm_on_demand_in_flight 5');
    expect(body).toContain('prewarm_pending_events 7');
    expect(body).toContain('prewarm_event_buffer_refusals_total 1');
    expect(body).toContain('prewarm_on_demand_coalesced_total 1');
    expect(body).toContain('prewarm_served_set_age_seconds_bucket{le="900",source="precomputed"} 0');
    expect(body).toContain('prewarm_served_set_age_seconds_bucket{le="1800",source="precomputed"} 1');
    expect(body).toContain('prewarm_served_set_age_seconds_count{source="on_demand"} 1');
    expect(body).toContain('prewarm_served_set_missed_interactions_bucket{le="2",source="precomputed"} 0');
    expect(body).toContain('prewarm_served_set_missed_interactions_bucket{le="5",source="precomputed"} 1');
    expect(body).toContain('prewarm_served_set_missed_interactions_bucket{le="0",source="on_demand"} 1');
  });
});
