import { collectDefaultMetrics, type Registry } from 'prom-client';

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
