import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { PrewarmError } from '../../errors.ts';
import { writeActivityCsv } from '../../replay/csv-write.ts';
import { createLoginRateTally, streamActivity } from '../../replay/generate.ts';
import { action } from '../runtime.ts';

interface GenerateFlags {
  out: string;
  seed: string;
  users: string;
  days: string;
  start: string;
  items: string;
  gzip?: boolean;
}

function badFlag(flag: string, message: string): PrewarmError {
  return new PrewarmError('PREWARM_ERR_BAD_INPUT', `--${flag} ${message}`);
}

function parseInteger(flag: string, text: string, minimum: number): number {
  const trimmed = text.trim();
  const value = Number(trimmed);
  if (!/^[+-]?\d+$/.test(trimmed) || !Number.isSafeInteger(value)) throw badFlag(flag, `must be an integer, not "${text}"`);
  if (value < minimum) throw badFlag(flag, `must be ${minimum === 1 ? 'positive' : `at least ${minimum}`}, not ${value}`);
  return value;
}

/** `YYYY-MM-DD`, or an ISO timestamp at midnight UTC: days must line up with daily windows. */
export function parseStartDate(text: string): Date {
  const trimmed = text.trim();
  const dateOnly = /^\d{4}-\d{2}-\d{2}$/.test(trimmed);
  const at = new Date(dateOnly ? `${trimmed}T00:00:00Z` : trimmed);
  if (!/^\d{4}-\d{2}-\d{2}/.test(trimmed) || Number.isNaN(at.getTime())) {
    throw badFlag('start', `must be an ISO date such as 2024-01-01, not "${text}"`);
  }
  // Date() rolls 2024-02-30 over to March; refuse instead of guessing.
  if (at.toISOString().slice(0, 10) !== trimmed.slice(0, 10)) throw badFlag('start', `is not a calendar date: "${text}"`);
  if (at.getTime() % 86_400_000 !== 0) throw badFlag('start', `must be midnight UTC, not "${text}"`);
  return at;
}

function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(1)}%`;
}

export function registerGenerate(program: Command): void {
  program
    .command('generate')
    .description('write a synthetic activity log (logins.csv, interactions.csv) with a fixed seed, for demos and tests')
    .requiredOption('--out <dir>', 'directory for logins.csv and interactions.csv (created if missing; files are replaced)')
    .option('--seed <n>', 'PRNG seed; the same flags always give the same files', '42')
    .option('--users <n>', 'population size (users who never log in included)', '3000')
    .option('--days <n>', 'length of the period in days', '60')
    .option('--start <date>', 'first day of the period, a UTC date', '2024-01-01')
    .option('--items <n>', 'size of the item catalogue', '500')
    .option('--gzip', 'write logins.csv.gz and interactions.csv.gz')
    .action(
      action(async (flags: GenerateFlags) => {
        const seed = parseInteger('seed', flags.seed, 0);
        const users = parseInteger('users', flags.users, 1);
        const days = parseInteger('days', flags.days, 1);
        const items = parseInteger('items', flags.items, 1);
        const start = parseStartDate(flags.start);
        if (flags.out.trim() === '') throw badFlag('out', 'must name a directory');

        const suffix = flags.gzip ? '.csv.gz' : '.csv';
        const loginsPath = join(flags.out, `logins${suffix}`);
        const interactionsPath = join(flags.out, `interactions${suffix}`);
        await mkdir(flags.out, { recursive: true });

        const startedAt = performance.now();
        const activity = streamActivity({ seed, users, days, start, items });
        const tally = createLoginRateTally(start, days);
        const written = await writeActivityCsv({
          loginsPath,
          interactionsPath,
          batches: activity.days,
          onBatch: (batch) => tally.add(batch.logins),
        });
        const summary = tally.result();
        const seconds = (performance.now() - startedAt) / 1000;
        process.stdout.write(
          `generated ${users} users (${summary.seenUsers} with logins), ${written.logins} logins, ${written.interactions} interactions ` +
            `over ${days} days from ${start.toISOString().slice(0, 10)}; daily login rate among known users ${percent(summary.dailyRateKnown)} ` +
            `→ ${loginsPath}, ${interactionsPath} (${seconds.toFixed(1)} s)\n`,
        );
      }),
    );
}
