import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../src/cli/main.ts';
import { isPrewarmError } from '../src/errors.ts';
import {
  INTERACTIONS_HEADER,
  LOGINS_HEADER,
  formatTimestamp,
  interactionRow,
  loginRow,
  writeActivityCsv,
  writeInteractionsCsv,
  writeLoginsCsv,
} from '../src/replay/csv-write.ts';
import {
  DEFAULT_SEGMENT_SHARES,
  SEGMENTS,
  SESSION_MAX_MS,
  createLoginRateTally,
  generateActivity,
  streamActivity,
  type GeneratedActivity,
  type InteractionEvent,
  type LoginEvent,
  type UserProfile,
} from '../src/replay/generate.ts';

const DAY_MS = 86_400_000;
const START = new Date('2024-01-01T00:00:00Z');

function dayOf(at: Date): number {
  return Math.floor((at.getTime() - START.getTime()) / DAY_MS);
}

function groupByUser<T extends { userId: string }>(events: readonly T[]): Map<string, T[]> {
  const byUser = new Map<string, T[]>();
  for (const event of events) {
    const list = byUser.get(event.userId);
    if (list) list.push(event);
    else byUser.set(event.userId, [event]);
  }
  return byUser;
}

function mean(values: readonly number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / values.length;
}

describe('generateActivity', () => {
  // The population the demo uses: `prewarm generate --seed 42 --users 3000 --days 60`.
  const DAYS = 60;
  let log: GeneratedActivity;
  let loginsByUser: Map<string, LoginEvent[]>;

  beforeAll(() => {
    log = generateActivity({ seed: 42, users: 3000, days: DAYS, start: START });
    loginsByUser = groupByUser(log.logins);
  });

  function activeDayShare(user: UserProfile, fromDay = 0, toDay = DAYS): number {
    const days = new Set((loginsByUser.get(user.userId) ?? []).map((login) => dayOf(login.at)).filter((day) => day >= fromDay && day < toDay));
    return days.size / (toDay - fromDay);
  }

  function usersOf(segment: UserProfile['segment']): UserProfile[] {
    return log.users.filter((user) => user.segment === segment);
  }

  it('gives the same log for the same seed and a different one for another seed', () => {
    const options = { seed: 7, users: 300, days: 21, start: START };
    const first = generateActivity(options);
    const again = generateActivity(options);
    const other = generateActivity({ ...options, seed: 8 });
    expect(again.logins.map(loginRow)).toEqual(first.logins.map(loginRow));
    expect(again.interactions.map(interactionRow)).toEqual(first.interactions.map(interactionRow));
    expect(again.users).toEqual(first.users);
    expect(other.logins.map(loginRow)).not.toEqual(first.logins.map(loginRow));
    expect(other.interactions.map(interactionRow)).not.toEqual(first.interactions.map(interactionRow));
  });

  it('keeps each user the same whatever the population or catalogue size', () => {
    const small = generateActivity({ seed: 42, users: 100, days: 30, start: START });
    const large = generateActivity({ seed: 42, users: 1000, days: 30, start: START, items: 80 });
    const strip = ({ userId: _userId, tasteCluster: _t, secondaryCluster: _s, ...rest }: UserProfile) => rest;
    expect(large.users.slice(0, 100).map(strip)).toEqual(small.users.map(strip));
    // Logins draw from their own streams: the catalogue does not move them.
    const sameSize = generateActivity({ seed: 42, users: 100, days: 30, start: START, items: 80 });
    expect(sameSize.logins.map(loginRow)).toEqual(small.logins.map(loginRow));
    expect(new Set(sameSize.interactions.map((interaction) => interaction.itemId)).size).toBeLessThanOrEqual(80);
  });

  it('sorts both lists by time, at second resolution, logins inside the period', () => {
    const end = START.getTime() + DAYS * DAY_MS;
    for (const events of [log.logins, log.interactions] as const) {
      const times = events.map((event) => event.at.getTime());
      expect(times.findIndex((time, i) => i > 0 && time < (times[i - 1] as number))).toBe(-1);
      expect(times.every((time) => time % 1000 === 0)).toBe(true);
    }
    expect(log.logins.every((login) => login.at.getTime() >= START.getTime() && login.at.getTime() < end)).toBe(true);
  });

  it('puts every interaction inside one of its user\'s sessions', () => {
    expect(log.interactions.length).toBeGreaterThan(log.logins.length);
    const outside: string[] = [];
    for (const interaction of log.interactions) {
      const logins = loginsByUser.get(interaction.userId) ?? [];
      // The user's latest login at or before the interaction.
      let low = 0;
      let high = logins.length;
      while (low < high) {
        const mid = (low + high) >>> 1;
        if ((logins[mid] as LoginEvent).at.getTime() <= interaction.at.getTime()) low = mid + 1;
        else high = mid;
      }
      const session = logins[low - 1];
      const inSession = session !== undefined && interaction.at.getTime() - session.at.getTime() < SESSION_MAX_MS;
      const clicks = Number.isInteger(interaction.weight) && interaction.weight >= 1 && interaction.weight <= 10;
      if (!inSession || !clicks) outside.push(interactionRow(interaction));
    }
    expect(outside).toEqual([]);
  });

  it('draws the segments in the configured mixture', () => {
    for (const segment of SEGMENTS) {
      expect(usersOf(segment).length / log.users.length).toBeCloseTo(DEFAULT_SEGMENT_SHARES[segment], 1);
    }
  });

  it('has daily regulars on most days and occasional visitors on few', () => {
    expect(mean(usersOf('regular').map((user) => activeDayShare(user)))).toBeGreaterThan(0.6);
    expect(mean(usersOf('occasional').map((user) => activeDayShare(user)))).toBeLessThan(0.1);
    // Regulars with several sessions a day exist.
    const multiSession = usersOf('regular').filter((user) => (loginsByUser.get(user.userId)?.length ?? 0) > 1.3 * DAYS);
    expect(multiSession.length).toBeGreaterThan(0);
  });

  it('lets churners go quiet for good after their churn day', () => {
    const churners = usersOf('churner');
    for (const user of churners) {
      const last = (loginsByUser.get(user.userId) ?? []).at(-1);
      if (last) expect(dayOf(last.at)).toBeLessThan(user.churnDay as number);
    }
    // ...and they were real users before it.
    const before = churners.filter((user) => (user.churnDay as number) >= 14).map((user) => activeDayShare(user, 0, (user.churnDay as number) - 7));
    expect(mean(before)).toBeGreaterThan(0.2);
  });

  it('brings weekly users back on their own weekday', () => {
    let onTheirDay = 0;
    let total = 0;
    for (const user of usersOf('weekly')) {
      for (const login of loginsByUser.get(user.userId) ?? []) {
        total += 1;
        if (login.at.getUTCDay() === user.preferredWeekday) onTheirDay += 1;
      }
    }
    expect(total).toBeGreaterThan(0);
    expect(onTheirDay / total).toBeGreaterThan(0.6);
  });

  it('first sees new sign-ups during the period, on their sign-up day', () => {
    const signups = usersOf('new');
    for (const user of signups) {
      const first = (loginsByUser.get(user.userId) ?? [])[0];
      expect(first).toBeDefined();
      expect(dayOf((first as LoginEvent).at)).toBe(user.signupDay);
      expect((first as LoginEvent).at.getTime()).toBeGreaterThanOrEqual(START.getTime() + DAY_MS);
    }
    // They keep coming after signing up, more than occasional visitors do.
    const after = signups.filter((user) => (user.signupDay as number) < DAYS - 14).map((user) => activeDayShare(user, user.signupDay as number));
    expect(mean(after)).toBeGreaterThan(0.1);
  });

  it('follows a daily and a weekly cycle', () => {
    const byHour = new Array<number>(24).fill(0);
    const byWeekday = new Array<number>(7).fill(0);
    for (const login of log.logins) {
      byHour[login.at.getUTCHours()] = (byHour[login.at.getUTCHours()] as number) + 1;
      byWeekday[login.at.getUTCDay()] = (byWeekday[login.at.getUTCDay()] as number) + 1;
    }
    const evening = (byHour[19] as number) + (byHour[20] as number) + (byHour[21] as number);
    const night = (byHour[3] as number) + (byHour[4] as number) + (byHour[5] as number);
    expect(evening).toBeGreaterThan(4 * night);
    // 2024-01-01 is a Monday; 60 days hold 9 Saturdays/Sundays and 8 or 9 of every other weekday.
    const weekendPerDay = ((byWeekday[0] as number) + (byWeekday[6] as number)) / 18;
    const weekdayPerDay = [1, 2, 3, 4, 5].reduce((sum, day) => sum + (byWeekday[day] as number), 0) / 42;
    expect(weekendPerDay).toBeLessThan(0.9 * weekdayPerDay);
  });

  it('has a daily login rate among known users between 10% and 25%', () => {
    const tally = createLoginRateTally(START, DAYS);
    tally.add(log.logins);
    const summary = tally.result();
    expect(summary.logins).toBe(log.logins.length);
    expect(summary.dailyRateKnown).toBeGreaterThan(0.1);
    expect(summary.dailyRateKnown).toBeLessThan(0.25);
  });

  it('gives items Zipf-like popularity and users shared tastes to learn from', () => {
    const counts = new Map<string, number>();
    for (const interaction of log.interactions) counts.set(interaction.itemId, (counts.get(interaction.itemId) ?? 0) + 1);
    const sorted = [...counts.values()].sort((a, b) => b - a);
    const top = sorted.slice(0, Math.ceil(500 / 10)).reduce((sum, count) => sum + count, 0);
    expect(top / log.interactions.length).toBeGreaterThan(0.4);

    // Users of one taste cluster overlap far more than users of different clusters.
    const itemsOf = new Map([...groupByUser(log.interactions)].map(([userId, list]) => [userId, new Set(list.map((event) => event.itemId))]));
    const engaged = log.users.filter((user) => (itemsOf.get(user.userId)?.size ?? 0) >= 20).slice(0, 300);
    const jaccard = (a: Set<string>, b: Set<string>) => {
      let shared = 0;
      for (const item of a) if (b.has(item)) shared += 1;
      return shared / (a.size + b.size - shared);
    };
    const same: number[] = [];
    const different: number[] = [];
    for (let i = 0; i < engaged.length; i += 1) {
      for (let j = i + 1; j < engaged.length; j += 1) {
        const a = engaged[i] as UserProfile;
        const b = engaged[j] as UserProfile;
        const similarity = jaccard(itemsOf.get(a.userId) as Set<string>, itemsOf.get(b.userId) as Set<string>);
        (a.tasteCluster === b.tasteCluster ? same : different).push(similarity);
      }
    }
    expect(same.length).toBeGreaterThan(100);
    expect(mean(same)).toBeGreaterThan(2 * mean(different));
  });

  it('streams the same log day by day, each day sorted', () => {
    const options = { seed: 3, users: 200, days: 10, start: START };
    const whole = generateActivity(options);
    const days = [...streamActivity(options).days];
    expect(days.map((day) => day.day)).toEqual([...Array(10).keys()]);
    for (const day of days) expect(day.logins.every((login) => dayOf(login.at) === day.day)).toBe(true);
    expect(days.flatMap((day) => day.logins).map(loginRow)).toEqual(whole.logins.map(loginRow));
    expect(days.flatMap((day) => day.interactions).map(interactionRow)).toEqual(whole.interactions.map(interactionRow));
  });

  it('generates 5,000 users over 90 days in well under 5 seconds', () => {
    const startedAt = performance.now();
    const big = generateActivity({ seed: 1, users: 5000, days: 90, start: START });
    expect(big.logins.length).toBeGreaterThan(50_000);
    expect(performance.now() - startedAt).toBeLessThan(5000);
  });

  it('refuses bad options with PREWARM_ERR_BAD_INPUT naming the option', () => {
    const cases: [Parameters<typeof generateActivity>[0], RegExp][] = [
      [{ seed: 1, users: 0, days: 1, start: START }, /users/],
      [{ seed: 1, users: 10, days: 2.5, start: START }, /days/],
      [{ seed: 1, users: 10, days: 2, start: START, items: -3 }, /items/],
      [{ seed: 1.5, users: 10, days: 2, start: START }, /seed/],
      [{ seed: 1, users: 10, days: 2, start: new Date('2024-01-01T05:00:00Z') }, /start/],
      [{ seed: 1, users: 10, days: 2, start: new Date('nope') }, /start/],
    ];
    for (const [options, message] of cases) {
      let thrown: unknown;
      try {
        generateActivity(options);
      } catch (error) {
        thrown = error;
      }
      expect(isPrewarmError(thrown, 'PREWARM_ERR_BAD_INPUT')).toBe(true);
      expect((thrown as Error).message).toMatch(message);
    }
  });
});

function parseCsv(text: string): string[][] {
  const lines = text.split('\n');
  expect(lines.at(-1)).toBe('');
  return lines.slice(0, -1).map((line) => line.split(','));
}

describe('CSV writer', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'prewarm-generate-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const sample = generateActivity({ seed: 11, users: 400, days: 30, start: START });

  function fromLoginRows(rows: string[][]): LoginEvent[] {
    return rows.map(([userId, ts]) => ({ userId: userId as string, at: new Date(ts as string) }));
  }

  function fromInteractionRows(rows: string[][]): InteractionEvent[] {
    return rows.map(([userId, itemId, ts, weight]) => ({ userId: userId as string, itemId: itemId as string, at: new Date(ts as string), weight: Number(weight) }));
  }

  it('formats timestamps as ISO 8601 UTC seconds', () => {
    expect(formatTimestamp(new Date('2024-01-01T08:13:05.000Z'))).toBe('2024-01-01T08:13:05Z');
  });

  it.each([['plain', ''], ['gzip', '.gz']])('round-trips logins and interactions (%s)', async (_name, suffix) => {
    const loginsPath = join(dir, `logins.csv${suffix}`);
    const interactionsPath = join(dir, `interactions.csv${suffix}`);
    expect(await writeLoginsCsv(loginsPath, sample.logins)).toBe(sample.logins.length);
    expect(await writeInteractionsCsv(interactionsPath, sample.interactions)).toBe(sample.interactions.length);
    const read = async (path: string) => {
      const bytes = await readFile(path);
      return suffix === '.gz' ? gunzipSync(bytes).toString('utf8') : bytes.toString('utf8');
    };
    const [loginHeader, ...loginRows] = parseCsv(await read(loginsPath));
    const [interactionHeader, ...interactionRows] = parseCsv(await read(interactionsPath));
    expect(loginHeader?.join(',')).toBe(LOGINS_HEADER);
    expect(interactionHeader?.join(',')).toBe(INTERACTIONS_HEADER);
    expect(fromLoginRows(loginRows)).toEqual(sample.logins);
    expect(fromInteractionRows(interactionRows)).toEqual(sample.interactions);
  });

  it('writes both files from a stream of days', async () => {
    const sub = await mkdtemp(join(dir, 'stream-'));
    const stream = streamActivity({ seed: 11, users: 400, days: 30, start: START });
    let batches = 0;
    const written = await writeActivityCsv({
      loginsPath: join(sub, 'logins.csv.gz'),
      interactionsPath: join(sub, 'interactions.csv.gz'),
      batches: stream.days,
      onBatch: () => (batches += 1),
    });
    expect(batches).toBe(30);
    expect(written).toEqual({ logins: sample.logins.length, interactions: sample.interactions.length });
    const logins = parseCsv(gunzipSync(await readFile(join(sub, 'logins.csv.gz'))).toString('utf8')).slice(1);
    expect(fromLoginRows(logins)).toEqual(sample.logins);
    expect((await readdir(sub)).sort()).toEqual(['interactions.csv.gz', 'logins.csv.gz']);
  });

  it('leaves neither file behind when the source fails midway', async () => {
    const sub = await mkdtemp(join(dir, 'failing-'));
    function* failing() {
      yield { logins: sample.logins.slice(0, 5000), interactions: sample.interactions.slice(0, 20_000) };
      throw new Error('source broke');
    }
    await expect(
      writeActivityCsv({ loginsPath: join(sub, 'logins.csv.gz'), interactionsPath: join(sub, 'interactions.csv'), batches: failing() }),
    ).rejects.toThrow('source broke');
    expect(await readdir(sub)).toEqual([]);
  });

  it('quotes fields that need it', async () => {
    const path = join(dir, 'odd.csv');
    await writeLoginsCsv(path, [{ userId: 'a,"b"', at: START }]);
    expect(await readFile(path, 'utf8')).toBe('user_id,ts\n"a,""b""",2024-01-01T00:00:00Z\n');
  });
});

describe('prewarm generate', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'prewarm-generate-cli-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  afterEach(() => {
    vi.restoreAllMocks();
    process.exitCode = undefined;
  });

  function capture(stream: NodeJS.WriteStream): string[] {
    const lines: string[] = [];
    vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    return lines;
  }

  it('writes the files and prints a one-line summary', async () => {
    const out = join(dir, 'ok');
    const stdout = capture(process.stdout);
    await main(['node', 'prewarm', 'generate', '--out', out, '--seed', '5', '--users', '300', '--days', '21', '--start', '2024-03-04', '--gzip']);
    vi.restoreAllMocks();
    expect(process.exitCode ?? 0).toBe(0);
    expect(stdout).toHaveLength(1);
    const expected = generateActivity({ seed: 5, users: 300, days: 21, start: new Date('2024-03-04T00:00:00Z') });
    expect(stdout[0]).toContain(`generated 300 users`);
    expect(stdout[0]).toContain(`${expected.logins.length} logins, ${expected.interactions.length} interactions`);
    expect(stdout[0]).toMatch(/daily login rate among known users \d+\.\d%/);
    const logins = gunzipSync(await readFile(join(out, 'logins.csv.gz'))).toString('utf8');
    expect(logins).toBe([LOGINS_HEADER, ...expected.logins.map(loginRow), ''].join('\n'));
  });

  it.each([
    [['--users', '0'], '--users'],
    [['--users', '12x'], '--users'],
    [['--days', '-4'], '--days'],
    [['--items', '2.5'], '--items'],
    [['--seed', 'abc'], '--seed'],
    [['--start', '2024-02-30'], '--start'],
    [['--start', 'yesterday'], '--start'],
  ])('refuses %j with exit code 2 and a message naming the flag', async (flags, flag) => {
    const stderr = capture(process.stderr);
    const stdout = capture(process.stdout);
    await main(['node', 'prewarm', 'generate', '--out', join(dir, 'bad'), ...flags]);
    vi.restoreAllMocks();
    expect(process.exitCode).toBe(2);
    expect(stdout).toEqual([]);
    expect(stderr.join('')).toMatch(new RegExp(`^prewarm: PREWARM_ERR_BAD_INPUT: ${flag} `));
  });
});
