import type { InteractionRecorder } from '../interactions/recorder.ts';
import { MAX_INTERACTIONS_PER_REQUEST } from '../interactions/route.ts';
import type { InteractionEvent } from './generate.ts';

/**
 * The replay's interactions, fed through the interactions API's recorder (the buffer behind
 * `POST /v1/interactions`, which also tells Redis each interaction's time) as the virtual clock
 * reaches them, instead of imported a window at a time: so sets can be behind, and the replay
 * measures how often they are (README "Replay and the demo").
 */
export interface InteractionFeed {
  /**
   * Acknowledges, in requests of at most 1,000 as the API takes them, every interaction before
   * `instant` not fed yet, then writes them to Postgres: whatever is computed at `instant` or
   * later sees them, and a login at `instant` or later counts those it missed.
   */
  feedBefore(instant: number): Promise<void>;
  /** Interactions fed so far. */
  fed(): number;
}

export interface InteractionFeedOptions {
  /** Sorted by time. */
  interactions: readonly InteractionEvent[];
  /** Index of the first interaction to feed (those before it were imported as history). */
  start: number;
  recorder: Pick<InteractionRecorder, 'offer' | 'flush'>;
}

export function createInteractionFeed({ interactions, start, recorder }: InteractionFeedOptions): InteractionFeed {
  let next = start;
  return {
    async feedBefore(instant) {
      const from = next;
      while (next < interactions.length && (interactions[next] as InteractionEvent).at.getTime() < instant) {
        let end = next;
        while (end < interactions.length && end - next < MAX_INTERACTIONS_PER_REQUEST && (interactions[end] as InteractionEvent).at.getTime() < instant) end++;
        const request = interactions.slice(next, end);
        // A full buffer answers 503 to a client, which retries: here, write it out and offer again.
        while (!recorder.offer(request)) await recorder.flush();
        next = end;
      }
      if (next > from) await recorder.flush();
    },
    fed: () => next - start,
  };
}
