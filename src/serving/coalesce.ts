/**
 * Concurrent callers asking for the same key share one in-flight promise: a login storm for
 * one cold user costs one computation, not a hundred.
 */
export function createCoalescer<T>() {
  const inFlight = new Map<string, Promise<T>>();
  return {
    run(key: string, work: () => Promise<T>): Promise<T> {
      const existing = inFlight.get(key);
      if (existing) return existing;
      const promise = work().finally(() => inFlight.delete(key));
      inFlight.set(key, promise);
      return promise;
    },
    size: () => inFlight.size,
    /** Settles when every computation started so far has settled. */
    async drain(): Promise<void> {
      await Promise.allSettled([...inFlight.values()]);
    },
  };
}
