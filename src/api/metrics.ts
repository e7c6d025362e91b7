import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerDefaultMetrics } from '../metrics/default-metrics.ts';

export { registerDefaultMetrics };

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
  const coalesced = new Counter({
    name: 'prewarm_on_demand_coalesced_total',
    help: "Logins that joined a lookup or on-demand computation already in flight for their user instead of starting one",
    registers: [registry],
  });
  const servedSetAge = new Histogram({
    name: 'prewarm_served_set_age_seconds',
    help: 'Age of the served set at the login (login time minus the set computation time), by source (precomputed, reused, on_demand)',
    labelNames: ['source'] as const,
    buckets: [1, 10, 60, 300, 900, 1_800, 3_600, 7_200, 14_400, 28_800, 86_400],
    registers: [registry],
  });
  const missedInteractions = new Histogram({
    name: 'prewarm_served_set_missed_interactions',
    help: "Interactions of the user at or after the served set's computation and before the login (0: up to date; above 0: the set was behind), by source; fallback answers and uncounted serves are not observed",
    labelNames: ['source'] as const,
    buckets: [0, 1, 2, 5, 10, 20, 50, 100],
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
    observeServe(source: string, latencyMs: number, reason: string | undefined, details?: { stalenessMs: number | null; coalesced: boolean; missedInteractions?: number | null }) {
      serves.inc({ source, reason: reason ?? '' });
      latency.observe({ source }, latencyMs / 1000);
      if (details?.coalesced) coalesced.inc();
      if (details?.stalenessMs != null) servedSetAge.observe({ source }, details.stalenessMs / 1000);
      if (details?.missedInteractions != null) missedInteractions.observe({ source }, details.missedInteractions);
    },
    pendingEvents,
    refusedForFullBuffer,
    onDemandInFlight,
  };
}

export type ApiMetrics = ReturnType<typeof createApiMetrics>;
