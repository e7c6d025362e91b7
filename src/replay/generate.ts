import { PrewarmError } from '../errors.ts';
import { createRandom, cumulativeOf, drawCumulative, exponential, normal, pick, poisson, shuffled, uniform, type Random } from './random.ts';

/**
 * A synthetic activity log, so that the demo, the tests and anyone without the real data sets
 * get a population with realistic heterogeneity: daily regulars, weekly users, occasional
 * visitors, users who churn, new sign-ups, a daily and a weekly cycle, and item tastes that
 * item-based collaborative filtering can learn.
 *
 * Everything is a pure function of the options. Each user draws from PRNG streams of their own
 * (profile, logins, items), derived from the seed and the user's index, so a user behaves the same
 * whatever the population size, and changing the catalogue size does not move a single login.
 */

/** One login (session start): a backend asked for the user's recommendations. */
export interface LoginEvent {
  userId: string;
  at: Date;
}

/** One user–item interaction during a session; `weight` counts clicks. */
export interface InteractionEvent {
  userId: string;
  itemId: string;
  at: Date;
  weight: number;
}

export type Segment = 'regular' | 'weekly' | 'occasional' | 'churner' | 'new';

/** How a user's day-to-day habit works; new sign-ups take one of the first three after signing up. */
export type Habit = 'regular' | 'weekly' | 'occasional' | 'churner';

export const SEGMENTS: readonly Segment[] = ['regular', 'weekly', 'occasional', 'churner', 'new'];

/** Default mixture of segments: a minority of regulars produces most of the logins. */
export const DEFAULT_SEGMENT_SHARES: Readonly<Record<Segment, number>> = Object.freeze({
  regular: 0.09,
  weekly: 0.18,
  occasional: 0.48,
  churner: 0.1,
  new: 0.15,
});

/** Interactions of a session happen at or after its login and before this much time has passed. */
export const SESSION_MAX_MS = 30 * 60_000;

/** Two sessions of one user on one day start at least this far apart (longer than a session). */
export const MIN_SESSION_GAP_MS = 45 * 60_000;

const DAY_MS = 86_400_000;

export interface GenerateOptions {
  /** PRNG seed (an integer); the same options always give the same log. */
  seed: number;
  /** Population size; users who never log in during the period are still counted here. */
  users: number;
  /** Length of the period in days. */
  days: number;
  /** First day of the period; must be midnight UTC, so that days align with daily windows. */
  start: Date;
  /** Size of the item catalogue. Default 500. */
  items?: number;
  /** Number of taste clusters the catalogue is split into. Default `max(2, round(items / 50))`. */
  clusters?: number;
  /** Mixture weights of the segments (normalised; missing segments get 0). Default {@link DEFAULT_SEGMENT_SHARES}. */
  segmentShares?: Partial<Record<Segment, number>>;
}

/** The ground truth behind a user's activity; tests and the demo use it to explain what they see. */
export interface UserProfile {
  userId: string;
  segment: Segment;
  habit: Habit;
  /** Per-day login probability on an ordinary weekday (for weekly users: on days other than their own). */
  dailyRate: number;
  /** Multiplier of `dailyRate` on Saturdays and Sundays. */
  weekendFactor: number;
  /** Weekly users: the UTC weekday (0 = Sunday) on which they log in with `weeklyRate`. */
  preferredWeekday: number | null;
  weeklyRate: number;
  /** Centre of the user's logins, in hours after midnight UTC. */
  preferredHour: number;
  /** Expected extra sessions on a day with at least one. */
  extraSessions: number;
  /** Churners: index of the first day with no activity at all (activity fades in the week before). */
  churnDay: number | null;
  /** New sign-ups: index of the day of their first login (≥ 1 whenever the period has two days). */
  signupDay: number | null;
  /** Index of the taste cluster most of the user's interactions fall into, and of a second one. */
  tasteCluster: number;
  secondaryCluster: number;
}

/** One day of the log, each list sorted by time; interactions of a session that runs past midnight come with the next day. */
export interface ActivityDay {
  day: number;
  dayStart: Date;
  logins: LoginEvent[];
  interactions: InteractionEvent[];
}

export interface ActivityStream {
  users: UserProfile[];
  /** Lazily generated days, in order; iterate once. */
  days: Iterable<ActivityDay>;
}

export interface GeneratedActivity {
  users: UserProfile[];
  logins: LoginEvent[];
  interactions: InteractionEvent[];
}

// ---------------------------------------------------------------------------------------------
// PRNG: sfc32 (small, fast, passes PractRand), seeded through a 32-bit mixer so that nearby seeds
// and user indexes give unrelated streams.

interface Resolved {
  seed: number;
  users: number;
  days: number;
  startMs: number;
  items: number;
  clusters: number;
  shares: [Segment, number][];
}

function badInput(message: string): PrewarmError {
  return new PrewarmError('PREWARM_ERR_BAD_INPUT', message);
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw badInput(`${name} must be a positive integer, not ${value}`);
  return value;
}

function resolveOptions(options: GenerateOptions): Resolved {
  if (!Number.isSafeInteger(options.seed)) throw badInput(`seed must be an integer, not ${options.seed}`);
  const users = positiveInteger('users', options.users);
  const days = positiveInteger('days', options.days);
  const items = positiveInteger('items', options.items ?? 500);
  const clusters = Math.min(items, positiveInteger('clusters', options.clusters ?? Math.max(2, Math.round(items / 50))));
  const startMs = options.start.getTime();
  if (!Number.isFinite(startMs) || startMs % DAY_MS !== 0) {
    throw badInput(`start must be a date at midnight UTC, not ${Number.isFinite(startMs) ? options.start.toISOString() : 'an invalid date'}`);
  }
  const given = options.segmentShares;
  const shares = SEGMENTS.map((segment): [Segment, number] => {
    const share = given ? (given[segment] ?? 0) : DEFAULT_SEGMENT_SHARES[segment];
    if (!Number.isFinite(share) || share < 0) throw badInput(`segment share of ${segment} must be a number ≥ 0, not ${share}`);
    return [segment, share];
  });
  if (shares.every(([, share]) => share === 0)) throw badInput('at least one segment share must be positive');
  return { seed: options.seed, users, days, startMs, items, clusters, shares };
}

// Stream tags, so that each purpose draws from its own sequence.
const STREAM_PROFILE = 1;
const STREAM_LOGINS = 2;
const STREAM_ITEMS = 3;
const STREAM_CATALOGUE = 4;

function seedParts(seed: number): [number, number] {
  return [seed >>> 0, Math.floor(seed / 4_294_967_296) >>> 0];
}

function padded(prefix: string, index: number, count: number): string {
  return `${prefix}${String(index + 1).padStart(String(count).length, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// Population

/** The hour a user's sessions centre on: everyone has one, evenings are the busiest. */
function drawPreferredHour(random: Random): number {
  const [mean, sd] = pick(random, [
    [[8, 1] as const, 0.2],
    [[12.5, 1] as const, 0.17],
    [[16, 1] as const, 0.15],
    [[20, 1.2] as const, 0.48],
  ]);
  return (normal(random, mean, sd) + 24) % 24;
}

function drawHabitParameters(random: Random, habit: Habit, profile: UserProfile): void {
  // Half of the users are tied to the working week and come less at weekends.
  const workWeek = random() < 0.5;
  switch (habit) {
    case 'regular':
      profile.dailyRate = uniform(random, 0.7, 0.97);
      profile.weekendFactor = workWeek ? uniform(random, 0.45, 0.7) : uniform(random, 0.95, 1.05);
      profile.extraSessions = uniform(random, 0.1, 1.3);
      break;
    case 'weekly':
      profile.preferredWeekday = Math.floor(random() * 7);
      profile.weeklyRate = uniform(random, 0.65, 0.95);
      profile.dailyRate = uniform(random, 0.005, 0.02);
      profile.weekendFactor = 1;
      profile.extraSessions = 0.1;
      break;
    case 'occasional':
      profile.dailyRate = uniform(random, 0.008, 0.06);
      profile.weekendFactor = workWeek ? 0.6 : 1.2;
      profile.extraSessions = 0.05;
      break;
    case 'churner':
      profile.dailyRate = uniform(random, 0.2, 0.7);
      profile.weekendFactor = workWeek ? 0.6 : 1;
      profile.extraSessions = uniform(random, 0, 0.5);
      break;
  }
}

function drawProfile(resolved: Resolved, index: number, clusterWeights: Float64Array): UserProfile {
  const random = createRandom(...seedParts(resolved.seed), STREAM_PROFILE, index);
  const segment = pick(random, resolved.shares);
  const habit: Habit =
    segment === 'new'
      ? pick<Habit>(random, [
          ['regular', 0.25],
          ['weekly', 0.25],
          ['occasional', 0.5],
        ])
      : segment;
  const profile: UserProfile = {
    userId: padded('u', index, resolved.users),
    segment,
    habit,
    dailyRate: 0,
    weekendFactor: 1,
    preferredWeekday: null,
    weeklyRate: 0,
    preferredHour: drawPreferredHour(random),
    extraSessions: 0,
    churnDay: null,
    signupDay: null,
    tasteCluster: 0,
    secondaryCluster: 0,
  };
  drawHabitParameters(random, habit, profile);
  if (segment === 'churner') {
    // Somewhere in the middle of the period, so that there is a before and an after.
    const earliest = Math.max(1, Math.floor(resolved.days * 0.15));
    const latest = Math.max(earliest, Math.floor(resolved.days * 0.85));
    profile.churnDay = earliest + Math.floor(random() * (latest - earliest + 1));
  }
  if (segment === 'new') {
    profile.signupDay = resolved.days >= 2 ? 1 + Math.floor(random() * (resolved.days - 1)) : 0;
  }
  profile.tasteCluster = drawCumulative(random, clusterWeights);
  profile.secondaryCluster = profile.tasteCluster;
  if (resolved.clusters > 1) {
    while (profile.secondaryCluster === profile.tasteCluster) profile.secondaryCluster = drawCumulative(random, clusterWeights);
  }
  return profile;
}

/** The probability that the user logs in at least once on day `day` (weekday 0 = Sunday). */
export function loginProbability(profile: UserProfile, day: number, weekday: number): number {
  if (profile.signupDay !== null) {
    if (day < profile.signupDay) return 0;
    if (day === profile.signupDay) return 1; // signing up is the first login
  }
  if (profile.churnDay !== null && day >= profile.churnDay) return 0;
  const weekend = weekday === 0 || weekday === 6;
  let p =
    profile.preferredWeekday === weekday ? profile.weeklyRate : profile.dailyRate * (weekend ? profile.weekendFactor : 1);
  if (profile.churnDay !== null) {
    // Engagement fades over the week before a churner leaves for good.
    const daysLeft = profile.churnDay - day;
    if (daysLeft <= 7) p *= daysLeft / 8;
  }
  if (profile.signupDay !== null) {
    // New users explore in their first days, then settle into their habit.
    const novelty = 0.6 * Math.exp(-(day - profile.signupDay) / 3);
    p = 1 - (1 - p) * (1 - novelty);
  }
  return Math.min(1, Math.max(0, p));
}

// ---------------------------------------------------------------------------------------------
// Catalogue

interface WeightedItems {
  items: number[];
  cumulative: Float64Array;
}

interface Catalogue {
  itemIds: string[];
  /** Zipf popularity over the whole catalogue. */
  global: WeightedItems;
  /** The same popularity restricted to each taste cluster. */
  byCluster: WeightedItems[];
  clusterWeights: Float64Array;
}

function buildCatalogue(resolved: Resolved): Catalogue {
  const random = createRandom(...seedParts(resolved.seed), STREAM_CATALOGUE);
  const itemIds = Array.from({ length: resolved.items }, (_, index) => padded('i', index, resolved.items));
  // Popularity rank is a random permutation, so item ids say nothing about popularity.
  const rankOf = shuffled(random, resolved.items);
  const popularity = rankOf.map((rank) => 1 / (rank + 1) ** 1.05);
  // Clusters are filled round-robin in a random order: all non-empty, similar sizes.
  const clusterOrder = shuffled(random, resolved.items);
  const members: number[][] = Array.from({ length: resolved.clusters }, () => []);
  clusterOrder.forEach((item, position) => (members[position % resolved.clusters] as number[]).push(item));
  const all = Array.from({ length: resolved.items }, (_, index) => index);
  // Some tastes are more common than others.
  const clusterWeights = cumulativeOf(Array.from({ length: resolved.clusters }, (_, index) => 1 / (index + 1) ** 0.6));
  return {
    itemIds,
    global: { items: all, cumulative: cumulativeOf(all.map((item) => popularity[item] as number)) },
    byCluster: members.map((items) => ({ items, cumulative: cumulativeOf(items.map((item) => popularity[item] as number)) })),
    clusterWeights,
  };
}

// ---------------------------------------------------------------------------------------------
// Per-user day simulation

interface UserState {
  profile: UserProfile;
  logins: Random;
  items: Random;
  /** Items the user has interacted with (repeats included, so re-picks follow frequency). */
  history: number[];
  /** Mean interactions per session beyond the first. */
  interactionMean: number;
}

const HISTORY_CAP = 200;

function sessionStarts(state: UserState, dayStartMs: number, weekday: number): number[] {
  const { profile } = state;
  const random = state.logins;
  const count = 1 + poisson(random, profile.extraSessions, 5);
  const weekendShift = weekday === 0 || weekday === 6 ? 1 : 0; // people start later at weekends
  const offsets: number[] = [];
  for (let i = 0; i < count; i += 1) {
    // The first session sits close to the user's hour; extra ones spread wider over the day.
    const hour = normal(random, profile.preferredHour + weekendShift, i === 0 ? 2 : 3);
    offsets.push(Math.floor((((hour % 24) + 24) % 24) * 3600) * 1000);
  }
  offsets.sort((x, y) => x - y);
  const starts: number[] = [];
  let previous = -Infinity;
  for (const offset of offsets) {
    const at = Math.max(offset, previous + MIN_SESSION_GAP_MS + Math.floor(exponential(random, 1800)) * 1000);
    if (at >= DAY_MS) break;
    starts.push(dayStartMs + at);
    previous = at;
  }
  return starts;
}

function chooseItem(state: UserState, catalogue: Catalogue): number {
  const random = state.items;
  const { profile, history } = state;
  if (history.length > 0 && random() < 0.25) return history[Math.floor(random() * history.length)] as number;
  // Mostly the user's own taste, some of a second one, a little of whatever is popular.
  const draw = random();
  const source =
    draw < 0.7
      ? (catalogue.byCluster[profile.tasteCluster] as WeightedItems)
      : draw < 0.85
        ? (catalogue.byCluster[profile.secondaryCluster] as WeightedItems)
        : catalogue.global;
  return source.items[drawCumulative(random, source.cumulative)] as number;
}

function sessionInteractions(state: UserState, catalogue: Catalogue, loginMs: number, out: InteractionEvent[]): void {
  const random = state.items;
  if (random() < 0.08) return; // a bounce: the user looked and left
  const count = 1 + poisson(random, state.interactionMean, 20);
  let offsetSeconds = Math.floor(exponential(random, 15));
  for (let i = 0; i < count; i += 1) {
    if (offsetSeconds * 1000 >= SESSION_MAX_MS) break;
    const item = chooseItem(state, catalogue);
    let weight = 1;
    while (weight < 10 && random() < 0.45) weight += 1;
    out.push({ userId: state.profile.userId, itemId: catalogue.itemIds[item] as string, at: new Date(loginMs + offsetSeconds * 1000), weight });
    if (state.history.length < HISTORY_CAP) state.history.push(item);
    else state.history[Math.floor(random() * HISTORY_CAP)] = item;
    offsetSeconds += 1 + Math.floor(exponential(random, 75));
  }
}

function byTimeThenUser(a: { at: Date; userId: string }, b: { at: Date; userId: string }): number {
  return a.at.getTime() - b.at.getTime() || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0);
}

/**
 * The population and a lazy, day-by-day log: memory stays at one day of events, so large
 * populations stream straight to CSV. Concatenating the days gives lists sorted by time.
 */
export function streamActivity(options: GenerateOptions): ActivityStream {
  const resolved = resolveOptions(options);
  const catalogue = buildCatalogue(resolved);
  const users = Array.from({ length: resolved.users }, (_, index) => drawProfile(resolved, index, catalogue.clusterWeights));

  function* days(): Generator<ActivityDay> {
    const [low, high] = seedParts(resolved.seed);
    const states: UserState[] = users.map((profile, index) => {
      const items = createRandom(low, high, STREAM_ITEMS, index);
      return { profile, logins: createRandom(low, high, STREAM_LOGINS, index), items, history: [], interactionMean: uniform(items, 1, 4) };
    });
    let carried: InteractionEvent[] = [];
    for (let day = 0; day < resolved.days; day += 1) {
      const dayStartMs = resolved.startMs + day * DAY_MS;
      const weekday = new Date(dayStartMs).getUTCDay();
      const logins: LoginEvent[] = [];
      const interactions: InteractionEvent[] = carried;
      for (const state of states) {
        // Always draw, so a user's stream advances the same way whatever happens on the day.
        const draw = state.logins();
        if (draw >= loginProbability(state.profile, day, weekday)) continue;
        for (const loginMs of sessionStarts(state, dayStartMs, weekday)) {
          logins.push({ userId: state.profile.userId, at: new Date(loginMs) });
          sessionInteractions(state, catalogue, loginMs, interactions);
        }
      }
      logins.sort(byTimeThenUser);
      interactions.sort(byTimeThenUser);
      // Sessions late in the evening run past midnight: those interactions belong with the next day.
      const nextDayMs = dayStartMs + DAY_MS;
      const last = day === resolved.days - 1;
      let cut = interactions.length;
      if (!last) while (cut > 0 && (interactions[cut - 1] as InteractionEvent).at.getTime() >= nextDayMs) cut -= 1;
      carried = interactions.slice(cut);
      yield { day, dayStart: new Date(dayStartMs), logins, interactions: interactions.slice(0, cut) };
    }
  }

  return { users, days: { [Symbol.iterator]: days } };
}

/** The whole log in memory: fine for thousands of users over a few months (well under a second). */
export function generateActivity(options: GenerateOptions): GeneratedActivity {
  const { users, days } = streamActivity(options);
  const logins: LoginEvent[] = [];
  const interactions: InteractionEvent[] = [];
  for (const day of days) {
    for (const login of day.logins) logins.push(login);
    for (const interaction of day.interactions) interactions.push(interaction);
  }
  return { users, logins, interactions };
}

// ---------------------------------------------------------------------------------------------
// Summary figures

export interface LoginRateSummary {
  /** Users with at least one login. */
  seenUsers: number;
  logins: number;
  /** Σ over days of the users known at the day's start (a login on an earlier day). */
  knownUserDays: number;
  /** Σ over days of the known users who logged in that day. */
  activeKnownUserDays: number;
  /** activeKnownUserDays / knownUserDays: the offline protocol's daily rate with 1d windows. */
  dailyRateKnown: number;
}

/**
 * Counts the daily login rate among known users, as the offline evaluation does with daily
 * windows aligned to `start`. Feed logins in time order (for example day by day), then call
 * `result()`; days without logins still count their known users.
 */
export function createLoginRateTally(start: Date, days: number): { add(logins: Iterable<LoginEvent>): void; result(): LoginRateSummary } {
  const startMs = start.getTime();
  const firstDay = new Map<string, number>();
  const knownJoins = new Array<number>(days + 1).fill(0);
  let activeKnownUserDays = 0;
  let logins = 0;
  let lastDay = -1;
  let activeToday = new Set<string>();
  return {
    add(batch) {
      for (const login of batch) {
        const day = Math.floor((login.at.getTime() - startMs) / DAY_MS);
        if (day < lastDay) throw new RangeError('logins must arrive in time order');
        if (day < 0 || day >= days) continue;
        if (day !== lastDay) {
          activeToday = new Set();
          lastDay = day;
        }
        logins += 1;
        const first = firstDay.get(login.userId);
        if (first === undefined) {
          firstDay.set(login.userId, day);
          knownJoins[day + 1] = (knownJoins[day + 1] as number) + 1;
        } else if (first < day && !activeToday.has(login.userId)) {
          activeToday.add(login.userId);
          activeKnownUserDays += 1;
        }
      }
    },
    result() {
      let known = 0;
      let knownUserDays = 0;
      for (let day = 0; day < days; day += 1) {
        known += knownJoins[day] as number;
        knownUserDays += known;
      }
      return {
        seenUsers: firstDay.size,
        logins,
        knownUserDays,
        activeKnownUserDays,
        dailyRateKnown: knownUserDays === 0 ? 0 : activeKnownUserDays / knownUserDays,
      };
    },
  };
}
