// `prewarm models list|show|promote|reject` as an operator runs them (child processes).
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordLogins } from '../src/activity/user-activity.ts';
import { systemClock } from '../src/clock.ts';
import { markChallenger } from '../src/propensity/champion.ts';
import { generateActivity } from '../src/replay/generate.ts';
import type { ModelMetrics } from '../src/propensity/model.ts';
import { saveModel, type StoredPropensityModel } from '../src/propensity/model-store.ts';
import { TEST_DATABASE_URL, createTestDb, silentLog, type TestDb } from './helpers.ts';

const DAY = 86_400_000;

function stored(version: string, daysAgo: number, ap: number): StoredPropensityModel {
  const trainedAt = new Date(Date.now() - daysAgo * DAY);
  return {
    version,
    trainedAt,
    trainFrom: new Date(trainedAt.getTime() - 28 * DAY),
    trainTo: trainedAt,
    // Only listed and shown here, never scored.
    model: { format: 1, kind: 'logistic', windowMs: DAY, featureNames: ['f'], logistic: {} as StoredPropensityModel['model']['logistic'], calibration: { kind: 'platt', a: 1, b: 0 } },
    metrics: { calibrationAveragePrecision: ap, calibrationRocAuc: 0.9, calibrationEce: 0.02, reliability: [] } as unknown as ModelMetrics,
  };
}

describe('prewarm models', () => {
  let db: TestDb;

  function prewarm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const env = { ...process.env, DATABASE_URL: TEST_DATABASE_URL, PREWARM_DB_SCHEMA: db.schema, PREWARM_LOG_LEVEL: 'silent' };
    return new Promise((resolve) => {
      execFile('node', ['src/cli/bin.mjs', ...args], { env }, (error, stdout, stderr) => {
        resolve({ code: error ? Number((error as NodeJS.ErrnoException & { code?: number }).code ?? 1) : 0, stdout, stderr });
      });
    });
  }

  beforeAll(async () => {
    db = await createTestDb();
    await saveModel(db.pool, stored('propensity-a', 3, 0.61));
    await saveModel(db.pool, stored('propensity-b', 2, 0.62));
    await saveModel(db.pool, stored('propensity-c', 1, 0.63));
    await markChallenger(db.pool, 'propensity-c', systemClock, silentLog);
  });
  afterAll(async () => db?.drop());

  it('lists models newest first: the challenger in shadow, the one serving, the retired one', async () => {
    const { code, stdout, stderr } = await prewarm(['models', 'list']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^version +status +trained +window +held-out AP +ECE +live AP +live ECE +runs +drifted$/);
    expect(lines.slice(1).map((line) => line.split(/ +/).slice(0, 2))).toEqual([
      ['propensity-c', 'challenger'],
      ['propensity-b', 'serving'],
      ['propensity-a', 'retired'],
    ]);
    expect(lines[1]).toMatch(/ 1d +0\.6300 +0\.0200 +— +— +0 +0$/);
    const json = JSON.parse((await prewarm(['models', 'list', '--json'])).stdout);
    expect(json.map((m: { version: string; status: string; serving: boolean }) => [m.version, m.status, m.serving])).toEqual([
      ['propensity-c', 'challenger', false],
      ['propensity-b', 'serving', true],
      ['propensity-a', 'retired', false],
    ]);
    expect(json[0]).toMatchObject({ role: 'challenger', decidedBy: 'scheduler', heldOut: { averagePrecision: 0.63 }, live: { runs: 0 } });
  }, 60_000);

  it('shows one model, a challenger with its shadow figures so far', async () => {
    const { code, stdout } = await prewarm(['models', 'show', 'propensity-c']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^model +propensity-c$/m);
    expect(stdout).toMatch(/^status +challenger \(challenger .* UTC by scheduler\)$/m);
    expect(stdout).toMatch(/^held out +AP 0\.6300, ROC AUC 0\.9000, ECE 0\.0200$/m);
    expect(stdout).toMatch(/^shadow so far +no shadowed run has ended yet$/m);
    const json = JSON.parse((await prewarm(['models', 'show', 'propensity-c', '--json'])).stdout);
    expect(json).toMatchObject({ version: 'propensity-c', status: 'challenger', runs: [], shadow: { runs: 0 } });
  }, 60_000);

  it('refuses unknown and malformed versions with clear errors', async () => {
    for (const command of ['show', 'promote', 'reject']) {
      const unknown = await prewarm(['models', command, 'propensity-nope']);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toBe('prewarm: PREWARM_ERR_NO_MODEL: no propensity model propensity-nope (prewarm models list)\n');
    }
    const malformed = await prewarm(['models', 'show', 'a b']);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain('a model version is letters, digits');
    const limit = await prewarm(['models', 'list', '--limit', '0']);
    expect(limit.code).toBe(2);
  }, 120_000);

  it('promotes and rejects; the serving model follows, and the last one that can serve is kept', async () => {
    const promoted = await prewarm(['models', 'promote', 'propensity-c']);
    expect(promoted.code).toBe(0);
    expect(promoted.stdout).toBe("propensity model propensity-c promoted: it serves from the planner's next scoring\n");
    let json = JSON.parse((await prewarm(['models', 'list', '--json'])).stdout);
    expect(json.map((m: { status: string }) => m.status)).toEqual(['serving', 'retired', 'retired']);

    const rejected = JSON.parse((await prewarm(['models', 'reject', 'propensity-c', '--json'])).stdout);
    expect(rejected).toEqual({ version: 'propensity-c', role: 'rejected', serving: 'propensity-b' });
    expect((await prewarm(['models', 'reject', 'propensity-b'])).stdout).toBe('propensity model propensity-b rejected; serving: propensity-a\n');
    json = JSON.parse((await prewarm(['models', 'list', '--json'])).stdout);
    expect(json.map((m: { status: string }) => m.status)).toEqual(['rejected', 'rejected', 'serving']);

    const last = await prewarm(['models', 'reject', 'propensity-a']);
    expect(last.code).toBe(2);
    expect(last.stderr).toBe('prewarm: PREWARM_ERR_BAD_INPUT: propensity-a is the only model that can serve: promote another one first\n');
    // A rejected model can be brought back by an operator.
    expect((await prewarm(['models', 'promote', 'propensity-b', '--json'])).stdout).toBe('{"version":"propensity-b","role":"champion","serving":"propensity-b"}\n');
  }, 120_000);

  it('train-propensity --challenger stores the new model in shadow beside the serving one', async () => {
    const { logins } = generateActivity({ seed: 3, users: 200, days: 40, start: new Date('2024-01-01T00:00:00Z') });
    await recordLogins(db.pool, logins);
    const trained = await prewarm(['train-propensity', '--challenger', '--train-windows', '21', '--json']);
    expect(trained.stderr).toBe('');
    expect(trained.code).toBe(0);
    const { version, role } = JSON.parse(trained.stdout);
    expect(role).toBe('challenger');
    const json = JSON.parse((await prewarm(['models', 'list', '--json', '--limit', '1'])).stdout);
    expect(json).toMatchObject([{ version, status: 'challenger', serving: false }]);
  }, 120_000);
});
