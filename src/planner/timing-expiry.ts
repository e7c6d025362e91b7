const DAY_MS = 86_400_000;

/**
 * Whether a timed run's sets live until the user's next set (chained) rather than the end of the
 * occurrence: on horizons of a day or more, where the next occurrence's set is computed within
 * the next day. Such a set lives one horizon past its run's end (`timedExpiry`).
 */
export function chainsSets(horizonMs: number): boolean {
  return horizonMs >= DAY_MS;
}

/** Expiry of a timed set: its run's end, plus one horizon when sets chain (superseded by the user's next set before then). */
export function timedExpiry(runExpiresAt: Date, horizonMs: number): Date {
  return chainsSets(horizonMs) ? new Date(runExpiresAt.getTime() + horizonMs) : runExpiresAt;
}
