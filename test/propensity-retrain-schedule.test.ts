import { afterEach, describe, expect, it } from 'vitest';
import { recordLogins } from '../src/activity/user-activity.ts';
import { VirtualClock } from '../src/clock.ts';
import { createDefaultScorer } from '../src/propensity/default-scorer.ts';
import { latestModelVersion } from '../src/propensity/model-store.ts';
import { startRetrainSchedule } from '../src/propensity/retrain-schedule.ts';
import { generateActivity } from '../src/replay/generate.ts';
import { createTestDb, silentLog, type TestDb } from './helpers.ts';

const DAY = 86_400_000;

describe('scheduled propensity retraining and the planner’s default scorer', () => {
  let db: TestDb | undefined;
  afterEach(async () => db?.drop());

  it('plans with the recency rule until a model exists, trains one on schedule, then scores with it', async () => {
    db = await createTestDb();
    const start = new Date('2024-01-01T00:00:00Z');
    const { logins } = generateActivity({ seed: 3, users: 200, days: 40, start });
    await recordLogins(db.pool, logins);
    const clock = new VirtualClock(start.getTime() + 40 * DAY);
    const scorer = createDefaultScorer({ pool: db.pool, log: silentLog });

    await scorer.scoreKnownUsers(clock.now(), DAY);
    expect(scorer.version).toBe('recency-v1');

    const stop = startRetrainSchedule({ pool: db.pool, log: silentLog, clock, windowMs: DAY, maxAgeMs: DAY, checkEveryMs: 50 });
    await expect.poll(() => latestModelVersion(db!.pool), { timeout: 20_000 }).toBeDefined();
    const first = await latestModelVersion(db.pool);
    // Within maxAgeMs no further model is trained.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await latestModelVersion(db.pool))?.version).toBe(first?.version);
    await stop();

    const candidates = await scorer.scoreKnownUsers(clock.now(), DAY);
    expect(scorer.version).toBe(first?.version);
    expect(candidates.length).toBeGreaterThan(100);
    expect(candidates.every((c) => c.p >= 0 && c.p <= 1)).toBe(true);
  });
});
