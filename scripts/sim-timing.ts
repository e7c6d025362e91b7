/**
 * Fast iteration on timed precompute (issue 15 item 4; src/planner/timing.ts). The whole-log
 * replay with `--timing predicted` takes up to an hour on a loaded machine; this script walks the
 * logins alone in seconds and evaluates timing rules on a proxy of the nightly selection.
 *
 *   npx tsx scripts/sim-timing.ts --logins FILE [--from DAY] [--to DAY] [--half-life 7d] [--coverage 0.8]
 *     [--selection FILE] [--set all|fresh] [--json]
 *
 * `--set fresh` evaluates only the placements of users without a live set (the risk rule at
 * several risks, the chained rule for all, by their last login or by a live set of any source)
 * and the planner's rule; `all` (the default) the earlier rules too.
 *
 * Daily windows at UTC midnight. The selection proxy: every day, the known users whose
 * recency-decayed login count is at least θ, with θ fixed over the log so that nightly covers
 * `--coverage` of the active known users (the planner's `coverage:0.8` selects about that). Each
 * rule then gives every selected user a compute time within the day; the simulator serves every
 * login from the newest live set of the user (computed at or before the login, not expired) and
 * counts, as the views do:
 * - volume: sets computed;
 * - coverage: active known users whose first login of the day came at or after the set the day's
 *   run computed for them; `1st served` also counts an earlier day's set live at that login, as
 *   coverage_by_run does for chained sets (migrations/0018);
 * - login coverage: logins served a precomputed set (any live one);
 * - age p50/p95 of the served precomputed sets (serves.staleness_ms, source precomputed).
 * A rule's `life` is how long a set lives past the end of its day: 0 is the planner's rule (a set
 * expires at the occurrence's end); with a longer life a login before the user's next compute time
 * is served the previous set, older. A login that finds no live set computes an on-demand one,
 * living a day (the replay's `onDemandTtlMs`); the newest live set is served, and an on-demand one
 * counts as `reused`, not precomputed.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { createGunzip } from 'node:zlib';
import { chainedOffset, CHAINED_SPAN_MS, chainedSpan, computeOffset } from '../src/planner/timing.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

interface Login {
  user: number;
  at: number;
}

async function readLogins(path: string): Promise<{ logins: Login[]; users: number; ids: Map<string, number> }> {
  const input = createReadStream(path);
  const lines = createInterface({ input: path.endsWith('.gz') ? input.pipe(createGunzip()) : input, crlfDelay: Infinity });
  const ids = new Map<string, number>();
  const logins: Login[] = [];
  let header = true;
  for await (const line of lines) {
    if (header) {
      header = false;
      continue;
    }
    const comma = line.indexOf(',');
    if (comma < 0) continue;
    const id = line.slice(0, comma);
    let user = ids.get(id);
    if (user === undefined) ids.set(id, (user = ids.size));
    logins.push({ user, at: Date.parse(line.slice(comma + 1)) });
  }
  logins.sort((a, b) => a.at - b.at);
  return { logins, users: ids.size, ids };
}

/** What a timing rule sees of a user at a day's start: their history before it. */
interface UserHistory {
  /** Decayed (28-day half-life) count of the user's logins by UTC hour, as the activity state keeps it. */
  hours: Float64Array;
  /** Decayed count of the user's first logins of a day, by UTC hour. */
  firstHours: Float64Array;
  /** The user's first logins of the last days, as offsets from their day's start, newest last. */
  recentFirsts: number[];
  lastAt: number;
}

interface DayContext {
  startMs: number;
  /** The population's share of logins by UTC hour over the 28 days before. */
  prior: Float64Array;
  /** The population's share of first logins of a day by UTC hour over the 28 days before. */
  firstPrior: Float64Array;
  /** The same by the time since the user's previous login at the day's start (gapBucket), over all days before. */
  gapPriors: Float64Array[];
  /** Whether the user has a set from the day before (selected then): with a longer life it serves a login before the new one. */
  hasPrevious: (user: number) => boolean;
  /** The latest expiry of the user's sets (policy or on-demand) computed before the day's start. */
  liveUntil: (user: number) => number;
  /** The first day simulated: the window's first timed run (no earlier timed run's sets live into it). */
  first: boolean;
}

/** Buckets of the time since a user's last login at a day's start: under 2 h, 2–24 h, 1–4 days, longer. */
const GAP_EDGES = [2 * HOUR, DAY, 4 * DAY];
function gapBucket(gapMs: number): number {
  let b = 0;
  while (b < GAP_EDGES.length && gapMs >= GAP_EDGES[b]!) b++;
  return b;
}

/** A timing rule: a user's compute offset from the day's start. */
type Rule = (user: UserHistory, day: DayContext, id: number) => number;

interface Variant {
  name: string;
  rule: Rule;
  /** How long a set lives past its day's end (0: the planner's expiry). */
  lifeMs: number;
  /** A user who logged in before their compute time is not precomputed (their on-demand set serves them). */
  skipEarly?: boolean;
  /** The selection's threshold for this variant (default: the nightly one). */
  theta?: number;
  /** Cheat for a bound: the user's actual first login of the day, known in advance. */
  oracle?: boolean;
}

interface Result {
  name: string;
  volume: number;
  activeKnown: number;
  covered: number;
  coverage: number;
  /** Active known users whose first login of the day was served a precomputed set (any live one). */
  firstServed: number;
  /** Share of the precomputed serves answered by a set of an earlier day (chained). */
  earlierServes: number;
  /** Median age of the serves by a set of the day's run, and by one of an earlier day's. */
  ownAgeP50h: number;
  earlierAgeP50h: number;
  logins: number;
  servedPrecomputed: number;
  loginCoverage: number;
  ageP50h: number;
  ageP95h: number;
  /** Share of the day's sets computed at the occurrence (offset 0). */
  atMidnight: number;
}

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (pos - lo);
}

const HALF_LIFE_HOURS = 28 * DAY;
/** Life of an on-demand set in the replay (onDemandTtlMs: the window, a day). */
const ON_DEMAND_TTL = DAY;

/**
 * A recorded selection (`day,user_id` rows, e.g. a kept replay schema's predictions with a chunk,
 * holdout excluded): the users each day's run chose, by day start. Replaces the proxy.
 */
async function readSelection(path: string, ids: Map<string, number>): Promise<Map<number, Set<number>>> {
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  const byDay = new Map<number, Set<number>>();
  for await (const line of lines) {
    const [day, id] = line.split(',');
    const user = ids.get(id ?? '');
    if (!day || user === undefined) continue;
    const dayMs = Date.parse(`${day}T00:00:00Z`);
    const set = byDay.get(dayMs) ?? new Set<number>();
    set.add(user);
    byDay.set(dayMs, set);
  }
  return byDay;
}

function simulate(
  logins: Login[],
  userCount: number,
  fromMs: number,
  toMs: number,
  halfLifeMs: number,
  theta: number,
  variants: Variant[],
  selection?: Map<number, Set<number>>,
): Result[] {
  const firstDay = Math.floor(fromMs / DAY) * DAY;
  const days = Math.ceil((toMs - firstDay) / DAY);
  // Per-user history, advanced a day at a time.
  const score = new Float64Array(userCount);
  const scoreAt = new Float64Array(userCount);
  const firstSeen = new Float64Array(userCount).fill(Number.POSITIVE_INFINITY);
  const history: UserHistory[] = Array.from({ length: userCount }, () => ({ hours: new Float64Array(24), firstHours: new Float64Array(24), recentFirsts: [], lastAt: Number.NEGATIVE_INFINITY }));
  const histAt = new Float64Array(userCount);
  const gapCounts = Array.from({ length: GAP_EDGES.length + 1 }, () => new Float64Array(24));
  const popHours: number[][] = [];
  const popFirst: number[][] = [];
  const results = variants.map((v) => ({ v, volume: 0, activeKnown: 0, covered: 0, firstServed: 0, earlier: 0, earlierAges: [] as number[], ownAges: [] as number[], logins: 0, served: 0, ages: [] as number[], midnight: 0 }));
  // Live sets per variant and user: [computedAt, expiresAt] of the newest two (a set is replaced by a newer one).
  const live = variants.map(() => new Map<number, Array<[number, number]>>());
  // The newest on-demand set per variant and user, [computedAt, expiresAt]: a login that found no live set computes one, which lives ON_DEMAND_TTL (the replay's: a window).
  const onDemand = variants.map(() => new Map<number, [number, number]>());
  let i = 0;
  // Logins before the first day build the history.
  const absorb = (from: number, to: number) => {
    const byUserDay = new Map<string, number>();
    const dayHours = new Array(24).fill(0);
    const dayFirst = new Array(24).fill(0);
    for (; i < logins.length && (logins[i] as Login).at < to; i++) {
      const { user, at } = logins[i] as Login;
      if (at < from) continue;
      const h = history[user] as UserHistory;
      const decay = Math.pow(0.5, (at - histAt[user]!) / HALF_LIFE_HOURS);
      for (let k = 0; k < 24; k++) {
        h.hours[k]! *= decay;
        h.firstHours[k]! *= decay;
      }
      histAt[user] = at;
      const hour = new Date(at).getUTCHours();
      h.hours[hour]! += 1;
      dayHours[hour] += 1;
      const dayStart = Math.floor(at / DAY) * DAY;
      const key = `${user}:${dayStart}`;
      if (!byUserDay.has(key)) {
        byUserDay.set(key, at);
        if (h.lastAt > Number.NEGATIVE_INFINITY) gapCounts[gapBucket(dayStart - h.lastAt)]![hour]! += 1;
        h.firstHours[hour]! += 1;
        dayFirst[hour] += 1;
        h.recentFirsts.push(at - dayStart);
        if (h.recentFirsts.length > 28) h.recentFirsts.shift();
      }
      h.lastAt = at;
      score[user] = score[user]! * Math.pow(0.5, (at - scoreAt[user]!) / halfLifeMs) + 1;
      scoreAt[user] = at;
      if (firstSeen[user] === Number.POSITIVE_INFINITY) firstSeen[user] = at;
    }
    return { dayHours, dayFirst };
  };
  // Warm-up: everything before the first day, in day steps so the population's hours are kept.
  const logStart = Math.floor((logins[0] as Login).at / DAY) * DAY;
  for (let d = logStart; d < firstDay; d += DAY) {
    const { dayHours, dayFirst } = absorb(d, d + DAY);
    popHours.push(dayHours);
    popFirst.push(dayFirst);
  }
  const share = (rows: number[][]): Float64Array => {
    const out = new Float64Array(24);
    let sum = 0;
    for (const row of rows.slice(-28)) {
      for (let k = 0; k < 24; k++) {
        out[k] = out[k]! + row[k]!;
        sum += row[k]!;
      }
    }
    for (let k = 0; k < 24; k++) out[k] = sum > 0 ? out[k]! / sum : 1 / 24;
    return out;
  };
  for (let d = 0; d < days; d++) {
    const startMs = firstDay + d * DAY;
    const gapPriors = gapCounts.map((counts) => {
      const sum = counts.reduce((a, b) => a + b, 0);
      return Float64Array.from(counts, (n) => (sum > 0 ? n / sum : 1 / 24));
    });
    const day: DayContext = { startMs, prior: share(popHours), firstPrior: share(popFirst), gapPriors, hasPrevious: () => false, liveUntil: () => Number.NEGATIVE_INFINITY, first: d === 0 };
    // Selection at the occurrence, from history before it.
    const firstAt = new Map<number, number>();
    for (let j = i; j < logins.length && (logins[j] as Login).at < startMs + DAY; j++) if (!firstAt.has(logins[j]!.user)) firstAt.set(logins[j]!.user, logins[j]!.at);
    const offsets = variants.map((v, k) => {
      const byUser = new Map<number, number>();
      // A set of an earlier day that lives through this one (as the planner's liveThrough asks).
      const sets = live[k]!;
      day.hasPrevious = (u) => (sets.get(u) ?? []).some(([computed, expires]) => computed < startMs && expires >= startMs + DAY);
      day.liveUntil = (u) => {
        let until = Number.NEGATIVE_INFINITY;
        for (const [computed, expires] of [...(sets.get(u) ?? []), ...(onDemand[k]!.has(u) ? [onDemand[k]!.get(u)!] : [])]) if (computed < startMs) until = Math.max(until, expires);
        return until;
      };
      const th = v.theta ?? theta;
      const chosen = selection?.get(startMs);
      for (let u = 0; u < userCount; u++) {
        if (chosen ? !chosen.has(u) : !(firstSeen[u]! < startMs) || !(score[u]! * Math.pow(0.5, (startMs - scoreAt[u]!) / halfLifeMs) >= th)) continue;
        let off = v.rule(history[u] as UserHistory, day, u);
        const first = firstAt.get(u);
        if (v.oracle) off = first === undefined ? 0 : Math.floor((first - startMs) / HOUR) * HOUR;
        if (v.skipEarly && first !== undefined && first < startMs + off) continue;
        byUser.set(u, off);
      }
      return byUser;
    });
    for (let k = 0; k < variants.length; k++) {
      const r = results[k]!;
      r.volume += offsets[k]!.size;
      for (const [u, off] of offsets[k]!) {
        if (off === 0) r.midnight++;
        const sets = live[k]!.get(u) ?? [];
        sets.push([startMs + off, startMs + DAY + variants[k]!.lifeMs]);
        while (sets.length > 3) sets.shift();
        live[k]!.set(u, sets);
      }
    }
    // The day's logins, served.
    const dayStartIndex = i;
    const firstOfDay = new Map<number, number>();
    for (let j = dayStartIndex; j < logins.length && (logins[j] as Login).at < startMs + DAY; j++) {
      const { user, at } = logins[j] as Login;
      if (!firstOfDay.has(user)) firstOfDay.set(user, at);
      const known = firstSeen[user]! < startMs;
      for (let k = 0; k < variants.length; k++) {
        const r = results[k]!;
        r.logins++;
        let best: [number, number] | undefined;
        for (const set of live[k]!.get(user) ?? []) if (set[0] <= at && at < set[1] && (!best || set[0] > best[0])) best = set;
        // The newest live set is served: an on-demand one newer than the policy set answers the login (reused, not precomputed).
        const od = onDemand[k]!.get(user);
        const odLive = od !== undefined && od[0] <= at && at < od[1];
        if (!best && !odLive) onDemand[k]!.set(user, [at, at + ON_DEMAND_TTL]);
        if (best && odLive && od[0] > best[0]) best = undefined;
        if (best) {
          r.served++;
          r.ages.push(at - best[0]);
          if (best[0] < startMs) {
            r.earlier++;
            r.earlierAges.push(at - best[0]);
          } else r.ownAges.push(at - best[0]);
        }
        if (known && firstOfDay.get(user) === at) {
          r.activeKnown++;
          if (best) r.firstServed++;
          const off = offsets[k]!.get(user);
          if (off !== undefined && startMs + off <= at) r.covered++;
        }
      }
    }
    const { dayHours, dayFirst } = absorb(startMs, startMs + DAY);
    popHours.push(dayHours);
    popFirst.push(dayFirst);
  }
  return results.map((r) => {
    const ages = Float64Array.from(r.ages).sort();
    return {
      name: r.v.name,
      volume: r.volume,
      activeKnown: r.activeKnown,
      covered: r.covered,
      coverage: r.covered / r.activeKnown,
      firstServed: r.firstServed / r.activeKnown,
      earlierServes: r.earlier / r.served,
      ownAgeP50h: quantile(Float64Array.from(r.ownAges).sort(), 0.5) / HOUR,
      earlierAgeP50h: quantile(Float64Array.from(r.earlierAges).sort(), 0.5) / HOUR,
      logins: r.logins,
      servedPrecomputed: r.served,
      loginCoverage: r.served / r.logins,
      ageP50h: quantile(ages, 0.5) / HOUR,
      ageP95h: quantile(ages, 0.95) / HOUR,
      atMidnight: r.midnight / r.volume,
    };
  });
}

/** Nightly: everyone at the occurrence. */
const nightly: Rule = () => 0;

/** The planner's rule (timing.ts): the all-logins hour histogram smoothed towards the population's. */
const planner =
  (risk: number, slotMs = HOUR): Rule =>
  (user, day) =>
    computeOffset(user.hours, day.prior, day.startMs, DAY, slotMs, risk);

/** The same rule on the hours of first logins of a day (own and population's). */
const firstLogin =
  (risk: number, slotMs = HOUR): Rule =>
  (user, day) =>
    computeOffset(user.firstHours, day.firstPrior, day.startMs, DAY, slotMs, risk);

/** First logins' hours, smoothed towards the population's first logins after the same time since a last login. */
const recency =
  (risk: number, slotMs = HOUR): Rule =>
  (user, day) =>
    computeOffset(user.firstHours, day.gapPriors[gapBucket(day.startMs - user.lastAt)]!, day.startMs, DAY, slotMs, risk);

/**
 * Sets that live until the user's next one: a user with yesterday's set still live is placed at
 * `chained` risk (an early login is served the older set), any other at `fresh` risk (an early
 * login is a miss).
 */
const chainedRule =
  (fresh: number, chained: number, slotMs = HOUR): Rule =>
  (user, day, id) =>
    computeOffset(user.hours, day.prior, day.startMs, DAY, slotMs, day.hasPrevious(id) ? chained : fresh);

/**
 * The planner's rule (timing.ts): a user with yesterday's set still live (it lives until their
 * next one) at the start of the `spanMs` with most of their logins (`chainedOffset`), any other
 * by the risk rule. Sets live a day past their own.
 */
const chainedPlanner =
  (risk: number, spanMs = CHAINED_SPAN_MS, slotMs = HOUR): Rule =>
  (user, day, id) =>
    day.hasPrevious(id) ? chainedOffset(user.hours, day.prior, day.startMs, slotMs, spanMs) : computeOffset(user.hours, day.prior, day.startMs, DAY, slotMs, risk);

/**
 * For sets that live until the user's next one: the slot that minimises the expected age of the
 * user's serves, with a login before the slot served yesterday's set (a day older).
 */
const minAge =
  (slotMs = HOUR, priorWeight = 4): Rule =>
  (user, day) => {
    let own = 0;
    for (let h = 0; h < 24; h++) own += user.hours[h]!;
    let best = 0;
    let bestAge = Number.POSITIVE_INFINITY;
    for (let slot = 0; slot < DAY; slot += slotMs) {
      let age = 0;
      for (let h = 0; h < 24; h++) {
        const w = ((own > 0 ? user.hours[h]! : 0) + (priorWeight * day.prior[h]!)) / (own + priorWeight);
        const mid = h * HOUR + HOUR / 2;
        age += w * (((mid - slot) % DAY) + DAY) % DAY;
      }
      if (age < bestAge - 1e-9) {
        bestAge = age;
        best = slot;
      }
    }
    return best;
  };

/**
 * The planner's chained rule, with users without a live set placed by the risk rule at `fresh`
 * risk (1: by the chained rule too, early logins are misses) — or, when `recentMs` is set, only
 * those whose last login is within `recentMs` of the occurrence by the chained rule.
 */
const chainedFresh =
  (fresh: number, spanMs = CHAINED_SPAN_MS, recentMs = 0, slotMs = HOUR): Rule =>
  (user, day, id) => {
    if (day.hasPrevious(id) || fresh >= 1 || (recentMs > 0 && day.startMs - user.lastAt <= recentMs)) return chainedOffset(user.hours, day.prior, day.startMs, slotMs, spanMs);
    return computeOffset(user.hours, day.prior, day.startMs, DAY, slotMs, fresh);
  };

/** Half the median offset from the occurrence of the population's logins (`prior`): half of nightly's median age. */
function halfNightlyAge(prior: Float64Array, startMs: number): number {
  let sum = 0;
  for (let k = 0; k < 24; k++) {
    const w = prior[new Date(startMs + k * HOUR).getUTCHours()]!;
    if (sum + w >= 0.5) return ((k + (0.5 - sum) / w) * HOUR) / 2;
    sum += w;
  }
  return DAY / 2;
}

/** The chained rule with the span at half of nightly's median age, from the population's hours; users' own hours scaled by `ownScale` (a prior weight of 4 / ownScale). */
const chainedDerived =
  (fresh: number, ownScale = 1, slotMs = HOUR): Rule =>
  (user, day, id) => {
    const hours = ownScale === 1 ? user.hours : user.hours.map((x) => x * ownScale);
    if (day.hasPrevious(id) || fresh >= 1) return chainedOffset(hours, day.prior, day.startMs, slotMs, halfNightlyAge(day.prior, day.startMs));
    return computeOffset(hours, day.prior, day.startMs, DAY, slotMs, fresh);
  };

/**
 * The chained rule for every user with a set that lives until their chained compute time (a
 * policy set of the day before, or an on-demand set of a login within its life): a login before
 * the new set finds that one. The others by the risk rule.
 */
const liveUntilRule =
  (fresh: number, spanMs = CHAINED_SPAN_MS, slotMs = HOUR): Rule =>
  (user, day, id) => {
    const chained = chainedOffset(user.hours, day.prior, day.startMs, slotMs, spanMs);
    if (day.hasPrevious(id) || day.liveUntil(id) >= day.startMs + chained) return chained;
    return computeOffset(user.hours, day.prior, day.startMs, DAY, slotMs, fresh);
  };

/**
 * The planner's rule (timing.ts): after the window's first timed run every user, with a live set
 * or not, at the start of the span (`chainedSpan`, half of nightly's median age from the
 * population's hours) with most of their logins; on the first day the risk rule.
 */
const plannerRule =
  (risk: number, slotMs = HOUR): Rule =>
  (user, day) =>
    day.first ? computeOffset(user.hours, day.prior, day.startMs, DAY, slotMs, risk) : chainedOffset(user.hours, day.prior, day.startMs, slotMs, chainedSpan(day.prior, day.startMs, slotMs));

function freshVariants(): Variant[] {
  const out: Variant[] = [{ name: 'nightly', rule: nightly, lifeMs: 0 }, { name: "the planner's (chained for all)", rule: plannerRule(0.02), lifeMs: DAY }];
  for (const span of [8, 10]) {
    for (const fresh of [0.02, 0.05, 0.1, 0.2, 0.3, 1]) out.push({ name: `chained ${span}h, fresh ${fresh}`, rule: chainedFresh(fresh, span * HOUR), lifeMs: DAY });
    out.push({ name: `chained ${span}h, fresh recent 1d`, rule: chainedFresh(0.02, span * HOUR, DAY), lifeMs: DAY });
  }
  for (const fresh of [0.02, 0.1]) out.push({ name: `live until, fresh ${fresh}`, rule: liveUntilRule(fresh), lifeMs: DAY });
  for (const span of [9, 10]) out.push({ name: `live until, ${span}h, fresh 0.02`, rule: liveUntilRule(0.02, span * HOUR), lifeMs: DAY });
  for (const fresh of [0.02, 0.1, 0.2, 1]) out.push({ name: `derived span, fresh ${fresh}`, rule: chainedDerived(fresh), lifeMs: DAY });
  for (const scale of [0.5, 2, 4]) out.push({ name: `derived span, fresh 0.1, own ×${scale}`, rule: chainedDerived(0.1, scale), lifeMs: DAY });
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      logins: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      'half-life': { type: 'string', default: '7' },
      coverage: { type: 'string', default: '0.8' },
      selection: { type: 'string' },
      json: { type: 'boolean', default: false },
      set: { type: 'string', default: 'all' },
    },
  });
  const { logins, users, ids } = await readLogins(values.logins as string);
  const selection = values.selection ? await readSelection(values.selection, ids) : undefined;
  const fromMs = values.from ? Date.parse(values.from) : Math.floor((logins[0] as Login).at / DAY) * DAY + 28 * DAY;
  const toMs = values.to ? Date.parse(values.to) : (logins[logins.length - 1] as Login).at + 1;
  const halfLifeMs = Number(values['half-life']) * DAY;
  const target = Number(values.coverage);
  // θ for nightly at the target coverage: bisection on the log (coverage falls as θ rises).
  let lo = 0;
  let hi = 50;
  for (let k = 0; k < 30; k++) {
    const mid = (lo + hi) / 2;
    const [r] = simulate(logins, users, fromMs, toMs, halfLifeMs, mid, [{ name: 'nightly', rule: nightly, lifeMs: 0 }]);
    if (r!.coverage >= target) lo = mid;
    else hi = mid;
  }
  const theta = lo;
  const variants: Variant[] = values.set === 'fresh' ? freshVariants() : [{ name: 'nightly', rule: nightly, lifeMs: 0 }, { name: 'oracle first login (bound)', rule: nightly, lifeMs: 0, oracle: true }];
  if (values.set !== 'fresh') {
    for (const risk of [0.02, 0.05, 0.1, 0.2]) variants.push({ name: `planner risk ${risk}`, rule: planner(risk), lifeMs: 0 });
    for (const risk of [0.02, 0.05, 0.1, 0.2]) variants.push({ name: `first-login risk ${risk}`, rule: firstLogin(risk), lifeMs: 0 });
    for (const risk of [0.02, 0.05, 0.1, 0.2]) variants.push({ name: `recency risk ${risk}`, rule: recency(risk), lifeMs: 0 });
    variants.push({ name: 'nightly, life +1d', rule: nightly, lifeMs: DAY });
    for (const risk of [0.02, 0.1, 0.2, 0.3, 0.5]) variants.push({ name: `planner ${risk}, life +1d`, rule: planner(risk), lifeMs: DAY });
    variants.push({ name: 'min-age, life +1d', rule: minAge(), lifeMs: DAY });
    for (const [f, c] of [[0.02, 0.3], [0.02, 0.4], [0.02, 0.5], [0.05, 0.5], [0.02, 0.7]] as const) variants.push({ name: `chained ${f}/${c}, life +1d`, rule: chainedRule(f, c), lifeMs: DAY });
    for (const span of [6, 8, 10, 12]) variants.push({ name: `planner chained, ${span}h`, rule: chainedPlanner(0.02, span * HOUR), lifeMs: DAY });
    variants.push({ name: 'planner chained, 8h, life +2d', rule: chainedPlanner(0.02), lifeMs: 2 * DAY });
    for (const h of [4, 6, 8, 10, 12]) variants.push({ name: `everyone at ${h}:00, life +1d`, rule: () => h * HOUR, lifeMs: DAY });
    // Skipping the users who came before their slot frees volume: spend it on more users (lower θ) at equal volume.
    for (const risk of [0.05, 0.1, 0.2]) {
      const nightlyVolume = simulate(logins, users, fromMs, toMs, halfLifeMs, theta, [{ name: 'n', rule: nightly, lifeMs: 0 }])[0]!.volume;
      let tlo = 0;
      let thi = theta;
      for (let k = 0; k < 25; k++) {
        const mid = (tlo + thi) / 2;
        const [r] = simulate(logins, users, fromMs, toMs, halfLifeMs, mid, [{ name: 's', rule: planner(risk), lifeMs: 0, skipEarly: true }]);
        if (r!.volume > nightlyVolume) tlo = mid;
        else thi = mid;
      }
      variants.push({ name: `planner ${risk}, skip early, eq vol`, rule: planner(risk), lifeMs: 0, skipEarly: true, theta: thi });
    }
  }
  const results = simulate(logins, users, fromMs, toMs, halfLifeMs, theta, variants, selection);
  if (values.json) {
    console.log(JSON.stringify({ theta, results }, null, 2));
    return;
  }
  console.log(`from ${new Date(fromMs).toISOString().slice(0, 10)}, θ=${theta.toFixed(3)} (decayed logins, half-life ${values['half-life']} d)`);
  console.log('variant                          volume  coverage  1st served  login cov  age p50/p95 h  at 00:00');
  const base = results[0]!;
  for (const r of results) {
    console.log(
      `${r.name.padEnd(32)} ${String(r.volume).padStart(6)}  ${(100 * r.coverage).toFixed(1).padStart(7)}%  ${(100 * r.firstServed).toFixed(1).padStart(9)}%  ${(100 * r.loginCoverage).toFixed(1).padStart(8)}%  ${r.ageP50h.toFixed(1).padStart(5)} / ${r.ageP95h.toFixed(1).padStart(4)}  ${(100 * r.atMidnight).toFixed(0).padStart(6)}%   (${(r.ageP50h / base.ageP50h).toFixed(2)}× age; ${(100 * r.earlierServes).toFixed(0)}% of serves from an earlier day's set, p50 ${r.earlierAgeP50h.toFixed(1)} h; the day's own ${r.ownAgeP50h.toFixed(1)} h)`,
    );
  }
}

await main();
