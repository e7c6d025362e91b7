import type { Command } from 'commander';
import { PrewarmError } from '../../errors.ts';
import type { ReliabilityBin } from '../../propensity/calibration.ts';
import { evaluateLog, type EvaluationReport } from '../../propensity/evaluate.ts';
import { readLoginLog, type LoginLogStats } from '../../propensity/login-log.ts';
import { FEATURE_COUNT } from '../../propensity/features.ts';
import { parseDurationFlag, parsePolicyFlag, parseTestPeriodFlags } from '../flags.ts';
import { action } from '../runtime.ts';

export function parseCountFlag(text: string | undefined, flag: string, min = 1): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `${flag} must be a whole number ≥ ${min}, not "${text}"`);
  return value;
}

export async function readLoginsFlag(path: string): Promise<{ log: Awaited<ReturnType<typeof readLoginLog>>['log']; stats: LoginLogStats; readMs: number }> {
  const started = Date.now();
  const { log, stats } = await readLoginLog(path);
  return { log, stats, readMs: Date.now() - started };
}

interface EvaluateFlags {
  logins: string;
  window: string;
  testFrom: string;
  testTo?: string;
  policy: string;
  trainWindows?: string;
  online?: boolean;
  retrainEvery?: string;
  json?: boolean;
}

/** `--online` retrains weekly unless told otherwise: daily (production's default) costs 7× the time. */
const DEFAULT_ONLINE_RETRAIN = '7d';

export function registerEvaluate(program: Command): void {
  program
    .command('evaluate')
    .description('offline evaluation (the protocol of docs/design.md): the propensity model beside "everyone", "active in the last k windows" and the oracle')
    .requiredOption('--logins <file>', 'logins CSV (user_id,ts), plain or gzip')
    .option('--window <length>', 'window length: 1d, 6h or 1h, aligned to UTC midnight', '1d')
    .requiredOption('--test-from <date>', 'first test window start (e.g. 2013-12-01); the model trains on the windows before it')
    .option('--test-to <date>', 'end of the test period, exclusive (default: end of the last window with a login)')
    .option('--policy <spec>', 'the policy reported as `model` (threshold:P | budget:N | coverage:F | waste:F | cost:RATIO | recent:K | all | none)', 'coverage:0.8')
    .option('--train-windows <n>', 'windows before --test-from to train and calibrate on (default: 26 weeks of windows)')
    .option('--online', 'as production runs: the model retrained on the clock, coverage/waste targets held by the feedback controller, a recency rule until there is enough history')
    .option('--retrain-every <duration>', `with --online: retrain the model this often (default ${DEFAULT_ONLINE_RETRAIN})`)
    .option('--json', 'print one JSON object instead of the tables')
    .addHelpText(
      'after',
      `
Examples:
  prewarm generate --out data --gzip      # a synthetic log (60 days from 2024-01-01) to try it on
  prewarm evaluate --logins data/logins.csv.gz --window 1d --test-from 2024-02-01
  prewarm evaluate --logins logins.csv.gz --window 6h --test-from 2004-07-15 --policy threshold:0.2 --json
  prewarm evaluate --logins logins.csv.gz --test-from 2004-07-15 --online --retrain-every 1d`,
    )
    .action(
      action(async (flags: EvaluateFlags) => {
        const { windowMs, testFromMs, testToMs } = parseTestPeriodFlags(flags);
        const policy = parsePolicyFlag(flags.policy);
        const trainWindows = parseCountFlag(flags.trainWindows, '--train-windows', 2);
        if (flags.retrainEvery !== undefined && !flags.online) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', '--retrain-every needs --online (offline, the model is trained once before --test-from)');
        const online = flags.online ? { retrainEveryMs: parseDurationFlag(flags.retrainEvery ?? DEFAULT_ONLINE_RETRAIN, '--retrain-every') } : undefined;
        const { log, stats, readMs } = await readLoginsFlag(flags.logins);
        const started = Date.now();
        const report = evaluateLog(log, { windowMs, testFromMs, testToMs, policy, trainWindows, online });
        const evaluateMs = Date.now() - started;
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(report)}\n`);
          return;
        }
        process.stdout.write(formatEvaluation(report, { source: flags.logins, stats, readMs, evaluateMs }));
      }),
    );
}

export function pct(value: number | undefined, digits = 1): string {
  return value === undefined || !Number.isFinite(value) ? '—' : `${(100 * value).toFixed(digits)}%`;
}

function num(value: number | undefined, digits = 4): string {
  return value === undefined || !Number.isFinite(value) ? '—' : value.toFixed(digits);
}

export function count(value: number): string {
  return value.toLocaleString('en-US');
}

/** Columns: the first left-aligned, the rest right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export function reliabilityLines(bins: readonly ReliabilityBin[]): string {
  return table(
    ['decile', 'users×windows', 'p from', 'p to', 'mean p', 'observed'],
    bins.map((bin) => [String(bin.decile), count(bin.count), num(bin.minPredicted, 4), num(bin.maxPredicted, 4), num(bin.meanPredicted, 4), num(bin.observedRate, 4)]),
  );
}

export function formatEvaluation(report: EvaluationReport, run: { source: string; stats: LoginLogStats; readMs: number; evaluateMs: number }): string {
  const out: string[] = [];
  out.push(`evaluate ${run.source}: ${report.window} windows, test ${report.testFrom.slice(0, 16)}Z → ${report.testTo.slice(0, 16)}Z (${report.testWindows} windows)`);
  out.push(
    `known user-windows ${count(report.knownUserWindows)}, active ${count(report.activeUserWindows)} (${pct(report.activeUserWindows / Math.max(1, report.knownUserWindows))})`,
  );
  if (report.model) {
    const m = report.model.metrics;
    out.push(
      `model: logistic regression on ${FEATURE_COUNT} features, trained ${report.model.trainFrom.slice(0, 10)} → ${report.model.trainTo.slice(0, 10)} (${report.model.trainWindows} windows, ${count(m.fitRows)} rows; last ${m.calibrationWindows} windows held out for calibration: AP ${num(m.calibrationAveragePrecision)}), policy ${report.model.policy}`,
    );
  }
  if (report.online) {
    const o = report.online;
    const target = o.appliedTarget ? `; target applied ${num(o.appliedTarget.first, 4)} first, ${num(o.appliedTarget.last, 4)} last (${num(o.appliedTarget.min, 4)}–${num(o.appliedTarget.max, 4)})` : '';
    const cold = o.coldStartWindows > 0 ? `; cold start: ${o.coldStartWindows} windows by ${o.coldStartRules.join(', ')} (${o.coldStartReason ?? ''})${o.modelFrom ? `, the model from ${o.modelFrom.slice(0, 10)}` : ''}` : '';
    out.push(`online: retrained every ${o.retrainEvery} (${o.retrains} models)${cold}${target}`);
  }
  out.push('');
  out.push(
    table(
      ['policy', 'volume', 'waste', 'coverage', 'AP', 'ROC AUC', 'waste@80%cov', 'waste@90%cov', 'cov@≤50%waste'],
      report.policies.map((p) => [
        p.name,
        pct(p.volume),
        pct(p.waste),
        pct(p.coverage),
        num(p.averagePrecision),
        num(p.rocAuc),
        pct(p.wasteAtCoverage80),
        pct(p.wasteAtCoverage90),
        pct(p.coverageAtWaste50),
      ]),
    ),
  );
  if (report.comparisons.length > 0) {
    out.push('Waste at each rule\'s own coverage (the model: one score threshold over all test user-windows, lowered until it covers as much):');
    out.push(
      table(
        ['rule', 'coverage', 'rule waste', 'model waste', 'model lower'],
        report.comparisons.map((c) => [c.rule, pct(c.coverage), pct(c.waste), pct(c.modelWaste), c.modelBetter ? 'yes' : 'NO']),
      ),
    );
  }
  if (report.model) {
    out.push('Reliability of the probabilities over the test period, by decile:');
    out.push(reliabilityLines(report.model.testReliability));
  }
  const skipped = run.stats.skipped > 0 ? `, ${count(run.stats.skipped)} malformed lines skipped` : '';
  out.push(`read ${count(run.stats.logins)} logins of ${count(run.stats.users)} users in ${(run.readMs / 1000).toFixed(1)} s${skipped}; evaluated in ${(run.evaluateMs / 1000).toFixed(1)} s`);
  return out.join('\n') + '\n';
}
