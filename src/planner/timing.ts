import type { Queue } from 'bullmq';
import type { VirtualClock } from '../clock.ts';
import { withTransaction, type Pool, type Queryable } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { DAY_MS, HOUR_MS, S, STATE_SIZE, stateFromBytes, utcHour } from '../propensity/state.ts';
import { gridFor, gridKey, rewindStates, syncGrid } from '../propensity/state-store.ts';
import { chainsSets } from './timing-expiry.ts';
import { enqueueRecordedChunks, type PrecomputeJobData, type PrecomputeJobResult } from './chunk-jobs.ts';
import type { WindowTiming } from './timing-settings.ts';
import { cutSql, dispatchSql, timedRunSql, type DispatchRunRow, type DueChunkRow } from './timing-sql.ts';

/**
 * Precompute timed to the login. A window with timing `predicted` decides once per occurrence who
 * is precomputed (its policy, exactly as an untimed window), then gives each of those users a
 * compute time: the start of the latest slot (slotMs long, counted from the occurrence) before
 * which the user's estimated chance of a first login in the horizon is at most `risk`. The
 * estimate is the hour-of-day histogram of the user's activity state (decayed, recent habits
 * count more), smoothed towards the population's hours by PRIOR_WEIGHT logins' worth, so a user
 * with little history is computed when the population starts logging in, not at their one login's
 * hour. On horizons shorter than a day sets expire at the occurrence's end (scheduled_for + ttl).
 *
 * On daily (or longer) horizons sets chain (timing-expiry.ts): a set lives until the user's next
 * one, so a login before the new set is served the previous one, older, not missed. There every
 * user of a run that follows a timed run of its window is placed for young serves instead
 * (`chainedOffset` over `chainedSpan`): the risk rule, which places a user whose first login of
 * the day is barely predictable at the occurrence, would serve them sets as old as nightly's. A
 * user new to the selection who logs in before their set is a miss, which coverage counts and the
 * held coverage target pays for with more users; a window's first timed run, where nobody has a
 * set to fall back on, keeps the risk rule.
 *
 * The compute times are recorded in Postgres: the run's chunks are cut by compute time
 * (`batch_chunks.due_at`), and a chunk is enqueued only once a dispatcher released it
 * (`dispatched_at`). Every scheduler tick dispatches (real time: every cron firing and every
 * 15 s cycle; a replay: at every slot start of its virtual clock), so a scheduler restart loses
 * nobody, and a dispatcher that dies between release and enqueue is covered by the sweep.
 */

export { DEFAULT_TIMING, type TimingMode, type WindowTiming } from './timing-settings.ts';

/** The population's hours count as this many logins of a user's own: little history, mostly prior. */
export const PRIOR_WEIGHT = 4;
/** The population's hours are read from this many days of logins before the occurrence. */
const PRIOR_DAYS = 28;
/**
 * `chainedOffset`'s span when none is given (tests, scripts/sim-timing.ts). The planner derives
 * the span from the population's hours instead (`chainedSpan`: on uci-messages 8.0–8.1 h).
 */
export const CHAINED_SPAN_MS = 8 * HOUR_MS;
const PAGE = 10_000;

/** A user's share of logins by UTC hour (`hours`, any scale; all zero when unknown), smoothed towards `prior` (summing to 1). */
export function smoothedHours(hours: ArrayLike<number>, prior: ArrayLike<number>): Float64Array {
  let own = 0;
  for (let h = 0; h < 24; h++) own += hours[h] as number;
  const out = new Float64Array(24);
  for (let h = 0; h < 24; h++) {
    const mine = own > 0 ? (hours[h] as number) / own : 0;
    out[h] = (own * mine + PRIOR_WEIGHT * (prior[h] as number)) / (own + PRIOR_WEIGHT);
  }
  return out;
}

/**
 * Offset from the window start of a user's compute time: the latest slot start b (a multiple of
 * slotMs below the horizon, and within its first day) with F(b) ≤ risk, where F is the chance
 * that the user's first login in the horizon falls before b. Logins are spread over the hours of
 * the day as `hours` (the user's own, any scale; all zero when unknown) smoothed towards `prior`
 * (the population's, summing to 1). 0 means "at the occurrence", as an untimed window.
 */
export function computeOffset(hours: ArrayLike<number>, prior: ArrayLike<number>, startMs: number, horizonMs: number, slotMs: number, risk: number): number {
  const share = smoothedHours(hours, prior);
  const span = Math.min(horizonMs, DAY_MS);
  // Weight of each hour of the span: the smoothed share of the day's logins in that UTC hour.
  const weightAt = (offset: number): number => share[utcHour(startMs + offset)] as number;
  let total = 0;
  for (let offset = 0; offset < span; offset += HOUR_MS) total += weightAt(offset) * (Math.min(HOUR_MS, span - offset) / HOUR_MS);
  if (!(total > 0)) return 0;
  let best = 0;
  let before = 0;
  let hourStart = 0;
  for (let slot = slotMs; slot < span; slot += slotMs) {
    // Mass of the span before `slot`, counting a partial hour in proportion.
    while (hourStart + HOUR_MS <= slot) {
      before += weightAt(hourStart);
      hourStart += HOUR_MS;
    }
    const partial = slot > hourStart ? (weightAt(hourStart) * (slot - hourStart)) / HOUR_MS : 0;
    if ((before + partial) / total > risk) break;
    best = slot;
  }
  return best;
}

/**
 * Offset of the compute time of a user whose previous set serves them until this one is
 * computed (a daily or longer horizon): the slot start b within the day that maximises the
 * (smoothed) share of the user's logins in [b, b + spanMs), day-wrapped — the logins served
 * younger than spanMs. A login before b is served the previous set (older), not missed. Ties go
 * to the latest slot: the same logins in the span, served younger.
 */
export function chainedOffset(hours: ArrayLike<number>, prior: ArrayLike<number>, startMs: number, slotMs: number, spanMs = CHAINED_SPAN_MS): number {
  const share = smoothedHours(hours, prior);
  // Mass of [from, to) of the day, from < to, in proportion within each UTC hour.
  const mass = (from: number, to: number): number => {
    let sum = 0;
    for (let t = from; t < to; ) {
      const hourEnd = (Math.floor(t / HOUR_MS) + 1) * HOUR_MS;
      const end = Math.min(hourEnd, to);
      sum += ((share[utcHour(startMs + t)] as number) * (end - t)) / HOUR_MS;
      t = end;
    }
    return sum;
  };
  const span = Math.min(spanMs, DAY_MS);
  let best = 0;
  let bestMass = Number.NEGATIVE_INFINITY;
  for (let slot = 0; slot < DAY_MS; slot += slotMs) {
    const end = slot + span;
    const m = end <= DAY_MS ? mass(slot, end) : mass(slot, DAY_MS) + mass(0, end - DAY_MS);
    if (m >= bestMass - 1e-12) {
      bestMass = m;
      best = slot;
    }
  }
  return best;
}

/**
 * The span a chained user's compute time starts (`chainedOffset`): half the median age nightly
 * would serve, i.e. half the median offset from the occurrence of the population's logins
 * (`prior`, by UTC hour, summing to 1), at least one slot. The age asked of timed sets is half of
 * nightly's, and a serve is younger than that exactly when its login falls in the span after its
 * set: so each user is placed to have most of their logins there. Read from the log, not a
 * constant of one log's calendar (a population logging in early after the occurrence gets a short
 * span, one logging in all day 6 h).
 */
export function chainedSpan(prior: ArrayLike<number>, startMs: number, slotMs: number): number {
  let before = 0;
  for (let offset = 0; offset < DAY_MS; offset += HOUR_MS) {
    const w = prior[utcHour(startMs + offset)] as number;
    if (w > 0 && before + w >= 0.5) return Math.max(slotMs, (offset + ((0.5 - before) / w) * HOUR_MS) / 2);
    before += w;
  }
  return Math.max(slotMs, DAY_MS / 4);
}

// Chained expiry, in a module of its own so that chunk-jobs.ts (imported here) can use it too.
export { chainsSets, timedExpiry } from './timing-expiry.ts';

/** The population's login share by UTC hour over the PRIOR_DAYS days before `startMs` (uniform when none). */
export async function populationHours(db: Queryable, startMs: number): Promise<Float64Array> {
  const sql = cutSql.hourCounts(new Date(startMs - PRIOR_DAYS * DAY_MS), new Date(startMs));
  const rows = (await db.query<{ hour: number; n: number }>(sql.text, sql.values)).rows;
  const prior = new Float64Array(24);
  let sum = 0;
  for (const row of rows) {
    prior[row.hour] = Number(row.n);
    sum += Number(row.n);
  }
  for (let h = 0; h < 24; h++) prior[h] = sum > 0 ? (prior[h] as number) / sum : 1 / 24;
  return prior;
}

export interface TimingDeps {
  pool: Pool;
  queue: Queue<PrecomputeJobData, PrecomputeJobResult>;
  log: Logger;
  itemsPerUser: number;
}

export interface Timing {
  /** Marks a claimed run as timed, before its shards select: none of its chunks is enqueued until released. */
  markRun(runId: number, timing: WindowTiming): Promise<void>;
  /**
   * Cuts a timed run's chunks by compute time (once: a re-plan finds it cut) and returns the
   * number of chunks. `now` is recorded as the cut's time.
   */
  cut(runId: number, chunkSize: number, now: Date): Promise<number>;
  /** Releases and enqueues the chunks due by `now` (of one run, or of every open run); returns the jobs added. */
  dispatch(now: Date, runId?: number): Promise<number>;
}

export function createTiming(deps: TimingDeps): Timing {
  const { pool, queue, log, itemsPerUser } = deps;

  /** The grid to read hour histograms from: the freshest, caught up; one on a 1-day grid when none exists. */
  async function grid(startMs: number) {
    const row = (await pool.query<{ window_ms: string | number; phase_ms: string | number }>(cutSql.freshestGrid)).rows[0];
    const chosen = row ? { windowMs: Number(row.window_ms), phaseMs: Number(row.phase_ms) } : gridFor(DAY_MS, startMs);
    await syncGrid(pool, chosen, log);
    return chosen;
  }

  /** Compute offsets of every user the run precomputes, a page at a time, staged in the transaction's temp table. */
  async function stageOffsets(client: Queryable, runId: number, startMs: number, horizonMs: number, slotMs: number, risk: number): Promise<{ slots: Map<number, number>; spanMs: number | undefined }> {
    const chosen = await grid(startMs);
    const key = gridKey(chosen);
    const prior = await populationHours(client, startMs);
    // Sets chain, and the previous timed run's sets live into this one (a timed run scheduled less
    // than two horizons ago): every user placed for young serves, with the span from the prior.
    let span: number | undefined;
    if (chainsSets(horizonMs)) {
      const follows = cutSql.followsTimedRun(runId, new Date(startMs - 2 * horizonMs), new Date(startMs));
      if ((await client.query<{ follows: boolean }>(follows.text, follows.values)).rows[0]?.follows) span = chainedSpan(prior, startMs, slotMs);
    }
    const hours = new Float64Array(24);
    const slots = new Map<number, number>();
    await client.query(cutSql.createStage);
    let after: string | null = null;
    for (;;) {
      const page = await client.query<{ user_id: string }>(cutSql.usersPage(runId, after, PAGE));
      if (page.rows.length === 0) break;
      const userIds = page.rows.map((row) => row.user_id);
      after = userIds[userIds.length - 1] as string;
      const index = new Map(userIds.map((id, i) => [id, i]));
      const states = new Float64Array(userIds.length * STATE_SIZE);
      // Users without a stored state keep COUNT 0: the population's hours alone place them.
      const statesSql = cutSql.states(key, userIds);
      for (const row of (await client.query<{ user_id: string; state: Buffer }>(statesSql.text, statesSql.values)).rows) {
        stateFromBytes(row.state, states, (index.get(row.user_id) as number) * STATE_SIZE);
      }
      // Logins at or after the occurrence (a late plan, a replay) are not the habit it predicts from.
      await rewindStates(client, { userIds, states }, chosen, startMs);
      const offsets = userIds.map((_id, i) => {
        const base = i * STATE_SIZE;
        // The histogram is valued at the user's last login; its shape is what matters, so no decay to startMs.
        for (let h = 0; h < 24; h++) hours[h] = (states[base + S.COUNT] as number) > 0 ? (states[base + S.HOUR + h] as number) : 0;
        const offset = span !== undefined ? chainedOffset(hours, prior, startMs, slotMs, span) : computeOffset(hours, prior, startMs, horizonMs, slotMs, risk);
        slots.set(offset, (slots.get(offset) ?? 0) + 1);
        return startMs + offset;
      });
      await client.query(cutSql.stage(userIds, offsets));
      if (page.rows.length < PAGE) break;
    }
    return { slots, spanMs: span };
  }

  async function chunkCount(db: Queryable, runId: number): Promise<number> {
    return (await db.query<{ n: number }>(timedRunSql.chunkCount(runId))).rows[0]?.n ?? 0;
  }

  return {
    async markRun(runId, timing) {
      await pool.query(timedRunSql.mark(runId, timing.slotMs, timing.risk));
    },

    async cut(runId, chunkSize, now) {
      return withTransaction(pool, async (client) => {
        const run = (await client.query<{ scheduled_for: Date; horizon_ms: string | number; timing_slot_ms: string | number; timing_risk: number }>(timedRunSql.lockUncut(runId))).rows[0];
        if (!run) return chunkCount(client, runId);
        const startMs = run.scheduled_for.getTime();
        const { slots, spanMs } = await stageOffsets(client, runId, startMs, Number(run.horizon_ms), Number(run.timing_slot_ms), Number(run.timing_risk));
        await client.query(cutSql.renumber(runId, chunkSize));
        await client.query(cutSql.dropChunks(runId));
        await client.query(cutSql.insertChunks(runId));
        await client.query(cutSql.markCut(runId, now));
        const chunks = await chunkCount(client, runId);
        const usersBySlotHour = Object.fromEntries([...slots].sort((a, b) => a[0] - b[0]).map(([offset, n]) => [offset / HOUR_MS, n]));
        log.info({ runId, chunks, rule: spanMs === undefined ? 'risk' : 'chained', chainedSpanHours: spanMs === undefined ? null : spanMs / HOUR_MS, usersBySlotHour }, 'timed run cut by compute time');
        return chunks;
      });
    },

    async dispatch(now, runId) {
      const released = (await pool.query<DueChunkRow>(dispatchSql.release(now, runId ?? null))).rows;
      if (released.length === 0) return 0;
      const byRun = new Map<number, number[]>();
      for (const row of released) byRun.set(Number(row.run_id), [...(byRun.get(Number(row.run_id)) ?? []), row.chunk_no]);
      const runs = (await pool.query<DispatchRunRow>(dispatchSql.runs([...byRun.keys()]))).rows;
      let added = 0;
      for (const run of runs) {
        const chunkNos = byRun.get(Number(run.id)) ?? [];
        added += await enqueueRecordedChunks(
          { pool, queue },
          { id: Number(run.id), window: run.window_name, scheduledFor: run.scheduled_for, expiresAt: run.expires_at, shards: run.shards },
          { windowPriority: run.priority, itemsPerUser, chunkNos },
        );
      }
      log.info({ at: now, chunks: released.length, jobs: added, runs: runs.length }, 'timed chunks dispatched');
      return added;
    },
  };
}

/** Chunks of a run that are held for a later compute time: no job is expected for them yet. */
export async function heldChunks(db: Queryable, runId: number): Promise<Set<number>> {
  return new Set((await db.query<{ chunk_no: number }>(timedRunSql.held(runId))).rows.map((row) => row.chunk_no));
}

/**
 * Waits until every chunk due by `now` of the open runs is computed: a replay's step before the
 * logins of the next slot, as a run's completion is for untimed windows.
 */
export async function waitForDueChunks(db: Queryable, now: Date, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    const pending = (await db.query<{ n: number }>(dispatchSql.pending(now))).rows[0]?.n ?? 0;
    if (pending === 0) return;
    if (Date.now() > deadline) throw new Error(`${pending} due chunks still not computed after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

/**
 * A replay's dispatcher on its virtual clock: stops the clock at every slot start of a timed
 * window, releases the chunks due then and waits for them, so a login sees exactly the sets
 * computed before it, each computed at its own slot's start (as a scheduler tick would at it).
 */
export function createSlotReleaser(args: { clock: VirtualClock; dispatch: (now: Date) => Promise<number>; db: Queryable; slotMs: number }) {
  const { clock, dispatch, db, slotMs } = args;
  let next = Number.POSITIVE_INFINITY;
  return {
    /** The next slot start not yet released. */
    get next(): number {
      return next;
    },
    /** A new window started (its own tick released what was due at its start). */
    start(windowStartMs: number): void {
      next = windowStartMs + slotMs;
    },
    /** Releases every slot start up to `ms`, inclusive, in turn. */
    async until(ms: number): Promise<void> {
      while (next <= ms) {
        clock.set(next);
        if ((await dispatch(clock.now())) > 0) await waitForDueChunks(db, clock.now());
        next += slotMs;
      }
    },
  };
}
