/** What a coalescer holds per key: anything with the promise that ends it. */
export interface Coalesced<T> {
  done: Promise<T>;
}

/**
 * Concurrent callers asking for the same key share one in-flight entry: a login storm for one
 * cold user costs one computation, not a hundred. The entry is the caller's own shape, so state
 * that later callers need (whether its computation is admitted) travels with the promise.
 */
export function createCoalescer<T, E extends Coalesced<T> = Coalesced<T>>() {
  const inFlight = new Map<string, E>();
  return {
    /** The key's entry in flight, else the one `start` makes, kept until its `done` settles. */
    run(key: string, start: () => E): E {
      const existing = inFlight.get(key);
      if (existing) return existing;
      const entry = start();
      inFlight.set(key, entry);
      const forget = () => {
        if (inFlight.get(key) === entry) inFlight.delete(key);
      };
      entry.done.then(forget, forget);
      return entry;
    },
    has: (key: string) => inFlight.has(key),
    size: () => inFlight.size,
    /** Settles when every entry started so far has settled. */
    async drain(): Promise<void> {
      await Promise.allSettled([...inFlight.values()].map((entry) => entry.done));
    },
  };
}
