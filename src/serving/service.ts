import { performance } from 'node:perf_hooks';
import pLimit from 'p-limit';
import type { Clock } from '../clock.ts';
import { PrewarmError } from '../errors.ts';
import { throttledErrorLog, type Logger } from '../log.ts';
import type { Recommender, ScoredItem } from '../recommender/types.ts';
import type { Freshness } from '../freshness/freshness.ts';
import type { InteractionRecorder } from '../interactions/recorder.ts';
import type { RecommendationCache } from '../sets/cache.ts';
import { isFresh, scoredItems, storedItems, type RecommendationSet } from '../sets/set.ts';
import type { RecommendationStore } from '../sets/store.ts';
import { createCoalescer } from './coalesce.ts';
import { timeOrderedId } from './time-ordered-id.ts';
import type { EventRecorder, ServeSource } from './event-recorder.ts';

const NO_KEYS: readonly string[] = [];

export type FallbackReason = 'unknown_user' | 'latency_budget' | 'overloaded' | 'compute_failed';

export interface ServeResult {
  userId: string;
  items: ScoredItem[];
  source: ServeSource;
  computedAt: Date | null;
  expiresAt: Date | null;
  stalenessMs: number | null;
  /** True when the served set missed interactions of its user (`missedInteractions` > 0). */
  behind: boolean;
  /**
   * The user's interactions at or after the served set's `computedAt` and before the login: 0 for
   * an up-to-date set, null for fallback answers or when they could not be counted.
   */
  missedInteractions: number | null;
  modelVersion: string;
  reason?: FallbackReason;
}

/** PREWARM_REFRESH_BEHIND: recompute a behind set at login (within the budget), or serve it as it is. */
export type RefreshBehind = 'login' | 'never';

export interface ServingOptions {
  /** Longest a login waits for an on-demand computation before popular items are served. */
  latencyBudgetMs: number;
  /** How long an on-demand set stays fresh for later logins (`reused`). */
  onDemandTtlMs: number;
  /** Items computed per set; requests take a prefix. Default 100. */
  setSize?: number;
  /** On-demand computations running at once in this process. */
  onDemandConcurrency: number;
  /**
   * On-demand computations allowed to wait for a slot. Running and waiting computations hold
   * `onDemandConcurrency + onDemandQueue` places; a login that finds them all taken gets
   * `fallback` / `overloaded` at once, and a login told `latency_budget` holds one, so its
   * computation runs to completion.
   */
  onDemandQueue: number;
  /**
   * Distinct users being looked up or computed at once in this process. A login for another
   * user beyond it gets `overloaded` at once, so that a storm cannot pile up lookups that outlive
   * their logins (each waits for Redis and a Postgres connection). Default 1,000.
   */
  maxLookups?: number;
  /**
   * What a login does with a set that is behind (its user interacted since it was computed):
   * `login` computes it again on demand, and serves the old one, marked behind, only if the new
   * one is not ready within the budget; `never` serves it marked behind. Default `login`.
   */
  refreshBehind?: RefreshBehind;
}

/** When a login was received, for the latency budget and the recorded latency. */
export interface LoginTiming {
  /** The login's instant, by default the clock's now; a replay passes each login's own time. */
  at?: Date;
  /**
   * `performance.now()` when the request arrived (the API passes Fastify's start of the
   * request), so that time spent queueing before the handler counts against the budget and in
   * the recorded latency. Default: when `getRecommendations` is called.
   */
  receivedAt?: number;
  /**
   * True when the login comes from a log of real logins (a replay), which vouches for the user
   * as an imported login does. Default false: an API request vouches only when it is not
   * answered `unknown_user` (README, "Known users").
   */
  fromLog?: boolean;
}

export interface RecommendationServiceDeps {
  cache: RecommendationCache;
  store: RecommendationStore;
  recommender: Recommender;
  recorder: EventRecorder;
  clock: Clock;
  log: Logger;
  options: ServingOptions;
  /**
   * Observes every answer (metrics): `stalenessMs` of the served set (null for `fallback`), and
   * `coalesced` when the login joined a lookup or computation already in flight for its user.
   */
  onServe?: (
    source: ServeSource,
    latencyMs: number,
    reason: FallbackReason | undefined,
    details: { stalenessMs: number | null; coalesced: boolean; missedInteractions?: number | null },
  ) => void;
  /**
   * The interactions API's buffer: a user's acknowledged interactions still in it are written
   * before an on-demand computation for that user, so the set reflects everything the user did
   * up to the instant it is computed. Default: none.
   */
  interactions?: Pick<InteractionRecorder, 'hasPending' | 'flush'>;
  /**
   * Tells whether a set is behind (src/freshness/freshness.ts). Default: none, and every set is
   * served as it is, with `missedInteractions` null.
   */
  freshness?: Pick<Freshness, 'keys' | 'fromValues' | 'countFrom' | 'countExactly'>;
}

export interface RecommendationService {
  /**
   * Answers one login. `at` is the login's instant, by default the clock's now; a replay passes
   * each login's own time so that logins of different users can be answered concurrently. The
   * latency budget runs from `receivedAt`.
   */
  getRecommendations(userId: string, limit: number, options?: LoginTiming): Promise<ServeResult>;
  /**
   * Number of users being looked up or computed on demand (running or waiting for a slot),
   * at most `maxLookups`. A computation stops counting only once
   * its set is written to Redis (or that write has failed), so at zero the next login finds every
   * set computed so far (`reused`); a login arriving while one counts joins it (`on_demand`).
   */
  inFlight(): number;
  /**
   * On-demand computations holding a place: running, waiting for a slot, or promised to a login
   * while their lookup still runs. Never more than `onDemandConcurrency + onDemandQueue`.
   */
  admitted(): number;
  /** Waits for on-demand computations to settle (their sets are then buffered). Idempotent. */
  close(): Promise<void>;
}

interface Answer {
  result: ServeResult;
  /** The served set's id, recorded with the serve; null for `fallback`. */
  setId: string | null;
}

type Computation =
  | { kind: 'set'; set: RecommendationSet }
  | { kind: 'unknown_user' }
  | { kind: 'overloaded' }
  | { kind: 'failed'; error: Error };

/** A fresh set and the interactions it missed (null: not counted). */
interface Found {
  set: RecommendationSet;
  missed: number | null;
}

type Resolution = ({ kind: 'fresh' } & Found) | Computation;

/**
 * One user's lookup and, when it finds no fresh set, computation, shared by the user's
 * concurrent logins. `phase`:
 * - `looking`: reading Redis and Postgres; holds no place;
 * - `admitted`: holds one of the `onDemandConcurrency + onDemandQueue` places, so the set will
 *   be computed unless the lookup finds one. Taken when the lookup finds none, or earlier, when a
 *   login's budget runs out during the lookup and that login is told `latency_budget`: a promise
 *   the queue limit can no longer break;
 * - `settled`: `done` has its outcome (or is about to).
 */
interface Lookup {
  done: Promise<Resolution>;
  phase: 'looking' | 'admitted' | 'settled';
  /** The behind set being computed again: what a login whose budget runs out is served. */
  behind?: Found;
}

/**
 * The login path: fresh set in Redis → fresh set in Postgres → on-demand computation within the
 * latency budget → popular items. Every answer is recorded (login + serve) through the recorder.
 */
export function createRecommendationService(deps: RecommendationServiceDeps): RecommendationService {
  const { cache, store, recommender, recorder, clock, log, options } = deps;
  const setSize = options.setSize ?? 100;
  const limit = pLimit(options.onDemandConcurrency);
  const coalescer = createCoalescer<Resolution, Lookup>();
  const places = options.onDemandConcurrency + options.onDemandQueue;
  const maxLookups = options.maxLookups ?? 1_000;
  const refreshBehind = options.refreshBehind ?? 'login';
  const { freshness } = deps;
  /** Places held by admitted computations (waiting for a slot, running, or still looking up). */
  let admitted = 0;
  let closing = false;
  // These fail on every login while Redis or Postgres is away: one line per interval, with a
  // count, instead of a stack trace per request (an outage once wrote 8 MB in 5 s).
  const storeReadFailed = throttledErrorLog(log, 'reading fresh sets from Postgres failed; computing on demand');
  const refillFailed = throttledErrorLog(log, 'cache refill failed');
  const onDemandCacheFailed = throttledErrorLog(log, 'caching an on-demand set failed');

  async function findFreshSet(userId: string, at: Date): Promise<Found | undefined> {
    // The set and what tells whether it is behind, in one MGET.
    const { set: cached, values } = await cache.getWith(userId, freshness ? freshness.keys(userId) : NO_KEYS);
    let set: RecommendationSet | undefined;
    if (cached && isFresh(cached, at)) set = cached;
    else {
      try {
        set = await store.findFresh(userId, at);
      } catch (error) {
        storeReadFailed(error);
        return undefined;
      }
      // Redis lost it (eviction, restart) or never had it: put it back for the next login.
      if (set) cache.setMany([set], at).catch(refillFailed);
    }
    if (!set) return undefined;
    if (!freshness) return { set, missed: null };
    const read = freshness.fromValues(values);
    const missed = freshness.countFrom(read, set.computedAt, at) ?? (await freshness.countExactly(read, userId, set.computedAt, at));
    return { set, missed };
  }

  async function compute(userId: string, at: Date): Promise<Computation> {
    const started = performance.now();
    try {
      if (deps.interactions?.hasPending(userId)) {
        // Postgres refusing the write leaves the history a little behind; still worth computing.
        await deps.interactions.flush().catch((error: unknown) => log.warn({ err: error, userId }, 'could not write buffered interactions before computing'));
      }
      // When the computation starts: after the login, later still if it waited for a slot.
      const computedAt = new Date(Math.max(at.getTime(), clock.now().getTime()));
      const result = (await recommender.recommend([userId], computedAt, setSize)).get(userId);
      if (!result || !result.personalised) return { kind: 'unknown_user' };
      const set: RecommendationSet = {
        id: timeOrderedId(),
        userId,
        source: 'on_demand',
        runId: null,
        holdout: false,
        computedAt,
        expiresAt: new Date(computedAt.getTime() + options.onDemandTtlMs),
        ...storedItems(result.items),
        modelVersion: recommender.modelVersion(),
        computeMs: performance.now() - started,
      };
      // Stored even when the login that asked has already been answered with popular items:
      // the compute is spent, and the next login finds the set (`reused`).
      recorder.addSet(set);
      await cache.setMany([set], computedAt).catch(onDemandCacheFailed);
      return { kind: 'set', set };
    } catch (error) {
      log.error({ err: error, userId }, 'on-demand computation failed');
      return { kind: 'failed', error: error as Error };
    }
  }

  /**
   * Takes a place for the lookup's computation unless it holds one; false when every place is
   * taken (a storm of distinct cold users must not queue without bound behind the slots).
   * An admitted computation is never dropped: it waits for a slot and runs to completion.
   */
  function admit(lookup: Lookup): boolean {
    if (lookup.phase === 'admitted') return true;
    if (lookup.phase !== 'looking' || admitted >= places) return false;
    admitted++;
    lookup.phase = 'admitted';
    return true;
  }

  function startLookup(userId: string, at: Date): Lookup {
    const lookup: Lookup = { phase: 'looking', done: lookUpThenCompute() };
    return lookup;

    // Touches `lookup` only after its first await, when `lookup` exists.
    async function lookUpThenCompute(): Promise<Resolution> {
      try {
        const found = await findFreshSet(userId, at);
        const refresh = found !== undefined && refreshBehind === 'login' && (found.missed ?? 0) > 0;
        if (found && !refresh) return { kind: 'fresh', ...found };
        // Behind: computed again, the old set served meanwhile to a login out of budget, and
        // whenever the new one cannot be had (no place, failed, no longer personalised).
        if (found) lookup.behind = found;
        if (!admit(lookup)) return found ? { kind: 'fresh', ...found } : { kind: 'overloaded' };
        const computed = await limit(() => compute(userId, at));
        return found && computed.kind !== 'set' ? { kind: 'fresh', ...found } : computed;
      } finally {
        if (lookup.phase === 'admitted') admitted--;
        lookup.phase = 'settled';
      }
    }
  }

  /**
   * Lookup and computation are shared by every concurrent request for the user: a request that
   * arrives while the first is still looking up or computing waits for the same outcome, so a
   * hundred concurrent logins of one cold user cost one computation. Undefined when `maxLookups`
   * users are already being looked up or computed.
   */
  function resolveSet(userId: string, at: Date): Lookup | undefined {
    if (!coalescer.has(userId) && coalescer.size() >= maxLookups) return undefined;
    return coalescer.run(userId, () => startLookup(userId, at));
  }

  async function withinBudget(computation: Promise<Resolution>, remainingMs: number): Promise<Resolution | 'timeout'> {
    if (remainingMs <= 0) return 'timeout';
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), remainingMs);
    });
    try {
      return await Promise.race([computation, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async function fallback(userId: string, at: Date, limitN: number, reason: FallbackReason): Promise<Answer> {
    let items: ScoredItem[];
    try {
      items = await recommender.popular(at, limitN);
    } catch (error) {
      throw new PrewarmError('PREWARM_ERR_SERVICE_UNAVAILABLE', 'no recommendations available: popular items could not be read', { cause: error });
    }
    const result: ServeResult = {
      userId,
      items: items.slice(0, limitN),
      source: 'fallback',
      computedAt: null,
      expiresAt: null,
      stalenessMs: null,
      behind: false,
      missedInteractions: null,
      modelVersion: recommender.modelVersion(),
      reason,
    };
    return { result, setId: null };
  }

  /** The source a found set is served as. */
  const foundSource = (set: RecommendationSet): ServeSource => (set.source === 'batch' ? 'precomputed' : 'reused');

  function fromSet(set: RecommendationSet, source: ServeSource, at: Date, limitN: number, missed: number | null): Answer {
    const result: ServeResult = {
      userId: set.userId,
      items: scoredItems(set, limitN),
      source,
      computedAt: set.computedAt,
      expiresAt: set.expiresAt,
      stalenessMs: Math.max(0, at.getTime() - set.computedAt.getTime()),
      behind: missed !== null && missed > 0,
      missedInteractions: missed,
      modelVersion: set.modelVersion,
    };
    return { result, setId: set.id };
  }

  async function answer(userId: string, at: Date, limitN: number, receivedAt: number): Promise<Answer> {
    const remaining = options.latencyBudgetMs - (performance.now() - receivedAt);
    // Already past its budget (it queued before the handler) and no place left: nothing to
    // wait for and nothing to promise, so no lookup is started either.
    if (remaining <= 0 && !coalescer.has(userId) && admitted >= places) return fallback(userId, at, limitN, 'overloaded');
    const lookup = resolveSet(userId, at);
    if (lookup === undefined) return fallback(userId, at, limitN, 'overloaded');
    let outcome = await withinBudget(lookup.done, remaining);
    if (outcome === 'timeout') {
      // Settled just as the budget ran out: its outcome is there to serve.
      if (lookup.phase === 'settled') outcome = await lookup.done;
      // A behind set being computed again (it holds a place): served as it is, marked behind.
      else if (lookup.behind) return fromSet(lookup.behind.set, foundSource(lookup.behind.set), at, limitN, lookup.behind.missed);
      // `latency_budget` promises that the next login finds the set: said only of a computation
      // that holds a place, which the queue limit can no longer drop.
      else return fallback(userId, at, limitN, admit(lookup) ? 'latency_budget' : 'overloaded');
    }
    switch (outcome.kind) {
      case 'fresh':
        return fromSet(outcome.set, foundSource(outcome.set), at, limitN, outcome.missed);
      case 'set':
        return fromSet(outcome.set, 'on_demand', at, limitN, 0);
      case 'unknown_user':
        return fallback(userId, at, limitN, 'unknown_user');
      case 'overloaded':
        return fallback(userId, at, limitN, 'overloaded');
      case 'failed':
        return fallback(userId, at, limitN, 'compute_failed');
    }
  }

  return {
    async getRecommendations(userId, limitN, options) {
      if (closing) throw new PrewarmError('PREWARM_ERR_SHUTTING_DOWN', 'the service is shutting down');
      if (recorder.isFull()) {
        throw new PrewarmError('PREWARM_ERR_SERVICE_UNAVAILABLE', 'too many events wait to be written to Postgres; try again shortly');
      }
      const receivedAt = options?.receivedAt ?? performance.now();
      const at = options?.at ?? clock.now();
      // answer() joins or starts the user's lookup before its first await: this is what it finds.
      const coalesced = coalescer.has(userId);
      const { result, setId } = await answer(userId, at, limitN, receivedAt);
      const latencyMs = performance.now() - receivedAt;
      // An id the recommender knows nothing about is recorded, but does not become a candidate.
      recorder.addLogin({ userId, at, vouched: options?.fromLog === true || result.reason !== 'unknown_user' });
      recorder.addServe({
        id: timeOrderedId(),
        userId,
        at,
        source: result.source,
        recommendationId: setId,
        stalenessMs: result.stalenessMs,
        latencyMs,
        reason: result.reason ?? null,
        missedInteractions: result.missedInteractions,
      });
      deps.onServe?.(result.source, latencyMs, result.reason, { stalenessMs: result.stalenessMs, coalesced, missedInteractions: result.missedInteractions });
      return result;
    },
    inFlight: () => coalescer.size(),
    admitted: () => admitted,
    async close() {
      closing = true;
      await coalescer.drain();
    },
  };
}
