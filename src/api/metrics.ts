import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * prom-client's default metrics that are gauges named `_total`. Each duplicates a metric it also
 * exposes without the suffix (`nodejs_active_handles{type}` summed over `type`), and Prometheus
 * reserves `_total` for counters (`promtool check metrics` refuses them), so they are left out.
 */
const GAUGES_NAMED_TOTAL = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * Node's default process metrics under their usual names (`process_*`, `nodejs_*`, no prefix), so
 * stock Node.js dashboards and alerts work unchanged.
 */
export function registerDefaultMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of GAUGES_NAMED_TOTAL) registry.removeSingleMetric(name);
}

/**
 * Prometheus metrics of one API process, in a registry of its own (tests run several apps).
 * Names follow Prometheus conventions: a `prewarm_` prefix on our own, `_total` on counters only,
 * base units (seconds).
 */
export function createApiMetrics(options: { defaultMetrics?: boolean; pendingEvents?: () => number } = {}) {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) registerDefaultMetrics(registry);
  const serves = new Counter({
    name: 'prewarm_serves_total',
    help: 'Answers to logins by source, and reason for fallback answers',
    labelNames: ['source', 'reason'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'prewarm_serve_latency_seconds',
    help: 'Time to answer a login, by source',
    labelNames: ['source'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const readPending = options.pendingEvents;
  const pendingEvents = new Gauge({
    name: 'prewarm_pending_events',
    help: 'Logins, serves and sets acknowledged but not yet written to Postgres',
    registers: [registry],
    collect() {
      if (readPending) this.set(readPending());
    },
  });
  const refusedForFullBuffer = new Counter({
    name: 'prewarm_event_buffer_refusals_total',
    help: 'Logins answered 503 because the event buffer was at its bound (PREWARM_EVENT_BUFFER_MAX)',
    registers: [registry],
  });
  const onDemandInFlight = new Gauge({
    name: 'prewarm_on_demand_in_flight',
    help: 'On-demand computations admitted and not finished (running or waiting for a slot)',
    registers: [registry],
  });
  return {
    registry,
    observeServe(source: string, latencyMs: number, reason: string | undefined) {
      serves.inc({ source, reason: reason ?? '' });
      latency.observe({ source }, latencyMs / 1000);
    },
    pendingEvents,
    refusedForFullBuffer,
    onDemandInFlight,
  };
}

export type ApiMetrics = ReturnType<typeof createApiMetrics>;
