// A closed-loop load generator for fault tests: `concurrency` loops each send one request at a
// time and count what came back. A request counts as acknowledged only when its 2xx body was
// read in full, which is what a backend service can rely on.

export interface LoadCounts {
  /** Responses by status code. */
  statuses: Record<number, number>;
  /** Requests that got no HTTP answer (connection refused or reset, timeout). */
  networkErrors: number;
  /** The same, by the error's code (`ECONNREFUSED`: never reached the server; `UND_ERR_SOCKET`: closed before the answer). */
  networkErrorCodes: Record<string, number>;
  /** Latencies of 2xx answers, milliseconds. */
  latenciesMs: number[];
}

export interface Load {
  /** Counts so far (a live view). */
  readonly counts: LoadCounts;
  /** Stops sending and waits for the requests in flight. */
  stop(): Promise<LoadCounts>;
}

export interface LoadOptions {
  concurrency: number;
  /** The URL of the n-th request of loop `loop`. */
  url(loop: number, n: number): string;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

export function startLoad(options: LoadOptions): Load {
  const counts: LoadCounts = { statuses: {}, networkErrors: 0, networkErrorCodes: {}, latenciesMs: [] };
  let running = true;
  const loops = Array.from({ length: options.concurrency }, async (_, loop) => {
    for (let n = 0; running; n++) {
      const started = performance.now();
      try {
        const response = await fetch(options.url(loop, n), {
          headers: options.headers ?? {},
          signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
        });
        await response.arrayBuffer();
        counts.statuses[response.status] = (counts.statuses[response.status] ?? 0) + 1;
        if (response.ok) counts.latenciesMs.push(performance.now() - started);
      } catch (error) {
        counts.networkErrors++;
        const code = errorCode(error);
        counts.networkErrorCodes[code] = (counts.networkErrorCodes[code] ?? 0) + 1;
        // A refused connection fails at once: do not spin.
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  });
  return {
    counts,
    async stop() {
      running = false;
      await Promise.all(loops);
      return counts;
    },
  };
}

export function ok(counts: LoadCounts): number {
  return Object.entries(counts.statuses)
    .filter(([status]) => Number(status) >= 200 && Number(status) < 300)
    .reduce((sum, [, n]) => sum + n, 0);
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** fetch wraps the network error: its cause has the code (ECONNREFUSED, UND_ERR_SOCKET, …). */
function errorCode(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; errors?: { code?: unknown }[] } }).cause;
  const code = cause?.code ?? cause?.errors?.[0]?.code ?? (error as { name?: unknown }).name;
  return typeof code === 'string' ? code : 'unknown';
}
