import type { Command } from 'commander';
import { systemClock } from '../../clock.ts';
import type { Queryable } from '../../db/pool.ts';
import { formatDuration } from '../../duration.ts';
import { PrewarmError } from '../../errors.ts';
import { compareOnOutcomes, promoteModel, rejectModel, type DecisionFigures } from '../../propensity/champion.ts';
import { latestModelVersion, listModels, type ListedModel } from '../../propensity/model-store.ts';
import { liveSummaryByModel, qualityOfModel, type LiveSummary, type RunQuality } from '../../propensity/quality.ts';
import { action, createCliContext, openPool } from '../runtime.ts';

/** What an operator sees a model as: the one serving, a challenger in shadow, rejected, or retired (served before). */
export type ModelStatus = 'serving' | 'challenger' | 'rejected' | 'retired';

export function modelStatus(model: Pick<ListedModel, 'serving' | 'role'>): ModelStatus {
  if (model.serving) return 'serving';
  if (model.role === 'challenger' || model.role === 'rejected') return model.role;
  return 'retired';
}

const num = (x: number | null | undefined, digits = 4) => (x === null || x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(digits));
const utc = (at: Date | null) => (at ? `${at.toISOString().slice(0, 16).replace('T', ' ')} UTC` : '—');
const nullIfNaN = (x: number) => (Number.isFinite(x) ? x : null);

function summary(model: ListedModel, live: LiveSummary | undefined) {
  return {
    version: model.version,
    status: modelStatus(model),
    role: model.role,
    serving: model.serving,
    trainedAt: model.trainedAt.toISOString(),
    window: formatDuration(model.model.windowMs),
    trainFrom: model.trainFrom.toISOString(),
    trainTo: model.trainTo.toISOString(),
    heldOut: {
      averagePrecision: nullIfNaN(model.metrics.calibrationAveragePrecision),
      rocAuc: nullIfNaN(model.metrics.calibrationRocAuc),
      calibrationError: nullIfNaN(model.metrics.calibrationEce),
    },
    live: live ?? { runs: 0, averagePrecision: null, calibrationError: null, drifted: 0 },
    decidedAt: model.decidedAt?.toISOString() ?? null,
    decidedBy: model.decidedBy,
    reason: model.reason,
    figures: (model.figures ?? null) as DecisionFigures | null,
  };
}

export type ModelSummary = ReturnType<typeof summary>;

export function formatModelTable(models: readonly ModelSummary[]): string {
  const header = ['version', 'status', 'trained', 'window', 'held-out AP', 'ECE', 'live AP', 'live ECE', 'runs', 'drifted'];
  const rows = models.map((m) => [m.version, m.status, utc(new Date(m.trainedAt)), m.window, num(m.heldOut.averagePrecision), num(m.heldOut.calibrationError), num(m.live.averagePrecision), num(m.live.calibrationError), String(m.live.runs), String(m.live.drifted)]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i < 4 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number))).join('  ').trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

function figuresLine(figures: DecisionFigures): string {
  return `${figures.runs} runs, ${Math.round(figures.users)} users (${Math.round(figures.loggedIn)} logged in): challenger AP ${num(figures.challenger.averagePrecision)} ECE ${num(figures.challenger.calibrationError)} vs serving AP ${num(figures.champion.averagePrecision)} ECE ${num(figures.champion.calibrationError)}`;
}

export function formatModelDetail(model: ModelSummary, runs: readonly RunQuality[], shadow: DecisionFigures | undefined): string {
  const lines: [string, string][] = [
    ['model', model.version],
    ['status', `${model.status}${model.decidedAt ? ` (${model.role ?? 'decided'} ${utc(new Date(model.decidedAt))} by ${model.decidedBy})` : ''}`],
    ['window', model.window],
    ['trained', `${utc(new Date(model.trainedAt))} on ${model.trainFrom.slice(0, 10)} → ${model.trainTo.slice(0, 10)}`],
    ['held out', `AP ${num(model.heldOut.averagePrecision)}, ROC AUC ${num(model.heldOut.rocAuc)}, ECE ${num(model.heldOut.calibrationError)}`],
    ['live', model.live.runs === 0 ? 'no ended run scored by it yet' : `${model.live.runs} ended runs: mean AP ${num(model.live.averagePrecision)}, mean ECE ${num(model.live.calibrationError)}, ${model.live.drifted} drifted`],
  ];
  if (model.reason) lines.push(['reason', model.reason]);
  if (model.figures) lines.push(['decided on', figuresLine(model.figures)]);
  if (shadow) lines.push(['shadow so far', shadow.runs === 0 ? 'no shadowed run has ended yet' : figuresLine(shadow)]);
  for (const run of runs.slice(0, 10)) {
    lines.push([
      `run #${run.runId}`,
      `${run.window} ${utc(run.scheduledFor)}: AP ${num(run.averagePrecision)}, ROC AUC ${num(run.rocAuc)}, ECE ${num(run.calibrationError)}, coverage ${num(run.coverage, 3)}, waste ${num(run.waste, 3)}, holdout miss rate ${num(run.holdoutMissRate, 3)}${run.drifted ? ', DRIFTED' : ''}`,
    ]);
  }
  const width = Math.max(...lines.map(([label]) => label.length));
  return `${lines.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n')}\n`;
}

function parseVersion(text: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/.test(text)) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `a model version is letters, digits, '.', '_', ':' and '-' (prewarm models list), not "${text}"`);
  return text;
}

function parseLimit(text: string): number {
  if (!/^[1-9][0-9]{0,3}$/.test(text)) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--limit must be a whole number from 1 to 9999, not "${text}"`);
  return Number(text);
}

async function findModel(pool: Queryable, version: string): Promise<ListedModel> {
  const found = (await listModels(pool, 10_000)).find((model) => model.version === version);
  if (!found) throw new PrewarmError('PREWARM_ERR_NO_MODEL', `no propensity model ${version} (prewarm models list)`);
  return found;
}

async function withPool(work: (pool: Queryable) => Promise<void>): Promise<void> {
  const context = createCliContext();
  const pool = openPool(context, 'prewarm-models');
  try {
    await work(pool);
  } finally {
    await pool.end();
  }
}

export function registerModels(program: Command): void {
  const models = program.command('models').description('propensity models: which serves, challengers in shadow, live quality; promote or reject');

  models
    .command('list')
    .description('the stored models, newest first: status, held-out and live figures')
    .option('--limit <n>', 'how many models (default 20)', '20')
    .option('--json', 'print JSON')
    .action(
      action(async (flags: { limit: string; json?: boolean }) => {
        const limit = parseLimit(flags.limit);
        await withPool(async (pool) => {
          const live = await liveSummaryByModel(pool);
          const list = (await listModels(pool, limit)).map((model) => summary(model, live.get(model.version)));
          if (flags.json) process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
          else if (list.length === 0) process.stdout.write('no propensity model yet: prewarm train-propensity\n');
          else process.stdout.write(formatModelTable(list));
        });
      }),
    );

  models
    .command('show')
    .description('one model: training, held-out figures, decision, live quality of its runs, a challenger\'s shadow figures so far')
    .argument('<version>', 'model version (prewarm models list)')
    .option('--json', 'print JSON')
    .action(
      action(async (text: string, flags: { json?: boolean }) => {
        const version = parseVersion(text);
        await withPool(async (pool) => {
          const model = await findModel(pool, version);
          const shown = summary(model, (await liveSummaryByModel(pool)).get(version));
          const runs = await qualityOfModel(pool, version);
          const shadow = model.role === 'challenger' ? await compareOnOutcomes(pool, version, systemClock.now()) : undefined;
          if (flags.json) process.stdout.write(`${JSON.stringify({ ...shown, metrics: model.metrics, runs, shadow: shadow ?? null }, null, 2)}\n`);
          else process.stdout.write(formatModelDetail(shown, runs, shadow));
        });
      }),
    );

  models
    .command('promote')
    .description('serve this model from the planner\'s next scoring, whatever its figures')
    .argument('<version>', 'model version (prewarm models list)')
    .option('--json', 'print JSON')
    .action(
      action(async (text: string, flags: { json?: boolean }) => {
        const version = parseVersion(text);
        await withPool(async (pool) => {
          await promoteModel(pool, version, systemClock);
          const serving = (await latestModelVersion(pool))?.version ?? null;
          if (flags.json) process.stdout.write(`${JSON.stringify({ version, role: 'champion', serving })}\n`);
          else process.stdout.write(`propensity model ${version} promoted: it serves from the planner's next scoring\n`);
        });
      }),
    );

  models
    .command('reject')
    .description('stop this model from serving or shadowing (refused for the only model that can serve)')
    .argument('<version>', 'model version (prewarm models list)')
    .option('--json', 'print JSON')
    .action(
      action(async (text: string, flags: { json?: boolean }) => {
        const version = parseVersion(text);
        await withPool(async (pool) => {
          await rejectModel(pool, version, systemClock);
          const serving = (await latestModelVersion(pool))?.version ?? null;
          if (flags.json) process.stdout.write(`${JSON.stringify({ version, role: 'rejected', serving })}\n`);
          else process.stdout.write(`propensity model ${version} rejected; serving: ${serving ?? 'none'}\n`);
        });
      }),
    );
}
