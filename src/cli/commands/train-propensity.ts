import type { Command } from 'commander';
import { systemClock } from '../../clock.ts';
import { formatDuration } from '../../duration.ts';
import { markChallenger } from '../../propensity/champion.ts';
import { latestModelVersion } from '../../propensity/model-store.ts';
import { trainPropensity } from '../../propensity/train.ts';
import { action, createCliContext, openPool } from '../runtime.ts';
import { parseWindowFlag } from '../flags.ts';
import { count, parseCountFlag, reliabilityLines } from './evaluate.ts';

interface TrainFlags {
  logins?: string;
  window: string;
  trainWindows?: string;
  maxTrainingRows?: string;
  json?: boolean;
  challenger?: boolean;
}

export function registerTrainPropensity(program: Command): void {
  program
    .command('train-propensity')
    .description('train the login-propensity model on the logins table (or a CSV) and store it as the newest version')
    .option('--logins <file>', 'train on this logins CSV instead of the logins table')
    .option('--window <length>', 'window length the model predicts a login in: 1d, 6h or 1h', '1d')
    .option('--train-windows <n>', 'windows to train and calibrate on, ending at the current window (default: 26 weeks of windows)')
    .option(
      '--max-training-rows <n>',
      'train on the users (smallest hash of user_id first) whose rows, one per known user and window, fit in this many; every user when they all fit (default: 2000000)',
    )
    .option('--challenger', 'store it as a challenger: it scores in shadow beside the serving model until the outcomes promote or reject it (it serves at once when no model serves yet)')
    .option('--json', 'print one JSON object: version, training period, metrics (metrics.sample: users and rows sampled) and role')
    .action(
      action(async (flags: TrainFlags) => {
        const windowMs = parseWindowFlag(flags.window);
        const trainWindows = parseCountFlag(flags.trainWindows, '--train-windows', 2);
        const maxTrainingRows = parseCountFlag(flags.maxTrainingRows, '--max-training-rows', 1);
        const context = createCliContext();
        const pool = openPool(context, 'prewarm-train-propensity');
        try {
          const servingBefore = flags.challenger ? (await latestModelVersion(pool))?.version : undefined;
          const stored = await trainPropensity({
            pool,
            log: context.log,
            clock: systemClock,
            windowMs,
            trainWindows,
            maxTrainingRows,
            loginsFile: flags.logins,
            onSave: servingBefore !== undefined ? (db, model) => markChallenger(db, model.version, systemClock, context.log) : undefined,
          });
          const role = servingBefore !== undefined ? 'challenger' : 'serving';
          if (flags.json) {
            process.stdout.write(
              `${JSON.stringify({
                version: stored.version,
                window: formatDuration(windowMs),
                trainFrom: stored.trainFrom.toISOString(),
                trainTo: stored.trainTo.toISOString(),
                metrics: stored.metrics,
                role,
              })}\n`,
            );
            return;
          }
          const m = stored.metrics;
          const sample = m.sample;
          process.stdout.write(
            [
              `propensity model ${stored.version}${role === 'challenger' ? ` (challenger: scores in shadow beside ${servingBefore} until the outcomes decide)` : ''}`,
              `window ${formatDuration(windowMs)}, trained ${stored.trainFrom.toISOString().slice(0, 10)} → ${stored.trainTo.toISOString().slice(0, 10)}: ${count(m.fitRows)} rows over ${m.fitWindows} windows (base rate ${(100 * m.fitBaseRate).toFixed(1)}%)`,
              ...(sample && sample.sampledUsers < sample.users
                ? [`sampled ${count(sample.sampledUsers)} of ${count(sample.users)} users (${count(sample.sampledRows)} of ${count(sample.rows)} rows, ${count(sample.sampledLogins)} of ${count(sample.logins)} logins held)`]
                : []),
              `held out (last ${m.calibrationWindows} windows, ${count(m.calibrationRows)} rows): average precision ${m.calibrationAveragePrecision.toFixed(4)}, ROC AUC ${m.calibrationRocAuc.toFixed(4)}, log loss ${m.calibrationLogLoss.toFixed(4)}, Brier ${m.calibrationBrier.toFixed(4)}, ECE ${m.calibrationEce.toFixed(4)}`,
              'Reliability by decile (held-out windows):',
              reliabilityLines(m.reliability),
            ].join('\n'),
          );
        } finally {
          await pool.end();
        }
      }),
    );
}
