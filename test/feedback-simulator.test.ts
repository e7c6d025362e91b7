import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_FEEDBACK } from '../src/planner/feedback.ts';
import { parsePolicy } from '../src/planner/policy.ts';
import { evaluateFile } from '../src/propensity/evaluate.ts';
import { generateActivity } from '../src/replay/generate.ts';

const DAY = 86_400_000;
const START = Date.parse('2024-01-01T00:00:00Z');
const run = promisify(execFile);

/**
 * scripts/sim-held-targets.ts is how held-target rules are chosen: its `shipped` line must be what
 * `evaluate --online` selects (the same controller, fed the same scores and logins), or a rule
 * tuned in the simulator is not the rule that ships.
 */
describe('the held-target simulator reproduces evaluate --online', () => {
  const dir = mkdtempSync(join(tmpdir(), 'prewarm-sim-held-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('the shipped rule: the same precomputes and hits as evaluate --online on the same log', async () => {
    const logins = generateActivity({ seed: 7, users: 600, days: 63, start: new Date(START) }).logins.sort((a, b) => a.at.getTime() - b.at.getTime());
    const csv = join(dir, 'logins.csv');
    writeFileSync(csv, `user_id,ts\n${logins.map((l) => `${l.userId},${l.at.toISOString()}`).join('\n')}\n`);
    const testFrom = new Date(START + 35 * DAY).toISOString();
    const cache = join(dir, 'walk.bin');
    const tsx = ['--import', 'tsx', 'scripts/sim-held-targets.ts'];
    await run(process.execPath, [...tsx, 'cache', '--logins', csv, '--test-from', testFrom, '--out', cache]);
    const { stdout } = await run(process.execPath, [...tsx, 'simulate', '--cache', cache, '--json'], { maxBuffer: 1 << 24 });
    const shipped = (JSON.parse(stdout) as { variant: string; precomputes: number; coverage: number; waste: number }[]).find((r) => r.variant === 'shipped');
    const { report } = await evaluateFile(csv, { windowMs: DAY, testFromMs: Date.parse(testFrom), policy: parsePolicy('coverage:0.8'), online: { retrainEveryMs: 7 * DAY } });
    const model = report.policies.find((p) => p.name === 'model');
    expect(model?.precomputes).toBeGreaterThan(0);
    expect(shipped?.precomputes).toBe(model?.precomputes);
    expect(shipped?.coverage).toBeCloseTo(model?.coverage ?? NaN, 12);
    expect(shipped?.waste).toBeCloseTo(model?.waste ?? NaN, 12);
    // The maps estimated on the pooled days: the simulator's `pooledDays` line is evaluate's selection with rescaleOn 'pooled-days'.
    const pooledDays = (JSON.parse(stdout) as { variant: string; precomputes: number; coverage: number; waste: number }[]).find((r) => r.variant === 'pooledDays');
    const { report: onDays } = await evaluateFile(csv, { windowMs: DAY, testFromMs: Date.parse(testFrom), policy: parsePolicy('coverage:0.8'), online: { retrainEveryMs: 7 * DAY, feedback: { ...DEFAULT_FEEDBACK, rescaleOn: 'pooled-days' } } });
    const onDaysModel = onDays.policies.find((p) => p.name === 'model');
    expect(onDaysModel?.precomputes).toBeGreaterThan(0);
    expect(pooledDays?.precomputes).toBe(onDaysModel?.precomputes);
    expect(pooledDays?.coverage).toBeCloseTo(onDaysModel?.coverage ?? NaN, 12);
  }, 300_000);
});
