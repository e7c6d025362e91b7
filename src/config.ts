import { z } from 'zod';
import { DEFAULT_FLUSH_INTERVAL_MS } from './db/batch-buffer.ts';
import { parseDuration } from './duration.ts';
import { PrewarmError } from './errors.ts';

const duration = z.string().transform((text, ctx) => {
  try {
    return parseDuration(text);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
    return z.NEVER;
  }
});

const positiveInt = z.coerce.number().int().positive();

const tokenList = z
  .string()
  .transform((text) => text.split(',').map((token) => token.trim()).filter((token) => token.length > 0))
  .refine((tokens) => tokens.every((token) => token.length >= 16), {
    message: 'every token must be at least 16 characters long',
  });

const url = (protocols: string[]) =>
  z.string().refine(
    (text) => {
      try {
        return protocols.includes(new URL(text).protocol);
      } catch {
        return false;
      }
    },
    { message: `must be a URL starting with ${protocols.join(' or ')}//` },
  );

/**
 * The whole configuration, read once from the environment at start-up. Its keys are the
 * environment variables themselves so that a validation message names the variable to fix.
 */
const envSchema = z.object({
  DATABASE_URL: url(['postgres:', 'postgresql:']).default('postgres://postgres@127.0.0.1:5432/test'),
  REDIS_URL: url(['redis:', 'rediss:']).default('redis://127.0.0.1:6379'),
  PORT: z.coerce.number().int().min(0).max(65_535).default(8080),
  PREWARM_HOST: z.string().min(1).default('127.0.0.1'),
  PREWARM_METRICS_PORT: z.coerce.number().int().min(0).max(65_535).optional(),
  PREWARM_API_TOKENS: tokenList.default([]),
  PREWARM_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters long').optional(),
  PREWARM_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  PREWARM_DB_SCHEMA: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier').default('public'),
  PREWARM_DB_POOL_SIZE: positiveInt.default(10),
  PREWARM_CACHE_REDIS_URL: url(['redis:', 'rediss:']).optional(),
  PREWARM_CACHE_PREFIX: z.string().default('prewarm:'),
  PREWARM_QUEUE_PREFIX: z.string().min(1).default('prewarm'),
  PREWARM_LATENCY_BUDGET_MS: positiveInt.default(150),
  PREWARM_DEFAULT_LIMIT: positiveInt.max(100).default(20),
  PREWARM_MAX_LIMIT: positiveInt.max(100).default(100),
  PREWARM_ON_DEMAND_TTL: duration.default(3_600_000),
  PREWARM_ON_DEMAND_CONCURRENCY: positiveInt.default(4),
  PREWARM_ON_DEMAND_QUEUE: z.coerce.number().int().min(0).default(64),
  PREWARM_REFRESH_BEHIND: z.enum(['login', 'never']).default('login'),
  PREWARM_RECOMMENDER: z.enum(['item-cf', 'http']).default('item-cf'),
  PREWARM_RECOMMENDER_URL: url(['http:', 'https:']).optional(),
  PREWARM_RECOMMENDER_TIMEOUT_MS: positiveInt.default(2_000),
  // Sent as `Authorization: Bearer …` to the model service; a header value cannot hold spaces or control characters.
  PREWARM_RECOMMENDER_TOKEN: z.string().regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces').optional(),
  PREWARM_RECOMMENDER_NEIGHBOURS: positiveInt.default(50),
  PREWARM_FLUSH_INTERVAL_MS: positiveInt.default(DEFAULT_FLUSH_INTERVAL_MS),
  PREWARM_FLUSH_MAX_BATCH: positiveInt.default(2_000),
  PREWARM_EVENT_BUFFER_MAX: positiveInt.default(200_000),
  PREWARM_WORKER_CONCURRENCY: positiveInt.default(4),
  PREWARM_SHUTDOWN_TIMEOUT_MS: positiveInt.default(15_000),
  PREWARM_PROPENSITY_WINDOW: duration.default(86_400_000),
  PREWARM_PROPENSITY_RETRAIN_EVERY: duration.default(86_400_000),
  PREWARM_PROPENSITY_DRIFT_MARGIN: z.coerce.number().min(0).max(1).default(0.05),
  PREWARM_PROPENSITY_CHALLENGER: z.enum(['on', 'off']).default('on'),
  PREWARM_RETENTION: duration.default(90 * 86_400_000),
  PREWARM_SWEEP_INTERVAL: duration.default(60_000),
  PREWARM_PLAN_PREDICTION_SAMPLE: z.coerce.number().int().min(0).default(100_000),
  PREWARM_PLAN_SHARDS: z.coerce.number().int().min(0).max(10_000).default(0),
});

export type Env = z.infer<typeof envSchema>;

/** The environment, validated, as the rest of the code reads it. */
const configSchema = envSchema.transform((e) => ({
  databaseUrl: e.DATABASE_URL,
  redisUrl: e.REDIS_URL,
  /** Redis for the recommendation cache; may allow eviction, unlike the queue's Redis. */
  cacheRedisUrl: e.PREWARM_CACHE_REDIS_URL ?? e.REDIS_URL,
  port: e.PORT,
  host: e.PREWARM_HOST,
  /** Port of the worker's and the scheduler's `/metrics` server (on `host`); unset: none. */
  metricsPort: e.PREWARM_METRICS_PORT,
  apiTokens: Object.freeze([...e.PREWARM_API_TOKENS]) as readonly string[],
  adminToken: e.PREWARM_ADMIN_TOKEN,
  logLevel: e.PREWARM_LOG_LEVEL,
  dbSchema: e.PREWARM_DB_SCHEMA,
  dbPoolSize: e.PREWARM_DB_POOL_SIZE,
  cachePrefix: e.PREWARM_CACHE_PREFIX,
  queuePrefix: e.PREWARM_QUEUE_PREFIX,
  latencyBudgetMs: e.PREWARM_LATENCY_BUDGET_MS,
  defaultLimit: e.PREWARM_DEFAULT_LIMIT,
  maxLimit: e.PREWARM_MAX_LIMIT,
  onDemandTtlMs: e.PREWARM_ON_DEMAND_TTL,
  onDemandConcurrency: e.PREWARM_ON_DEMAND_CONCURRENCY,
  onDemandQueue: e.PREWARM_ON_DEMAND_QUEUE,
  /** A set behind its user's interactions: computed again at login within the budget (`login`), or served marked behind (`never`). */
  refreshBehind: e.PREWARM_REFRESH_BEHIND,
  recommender: e.PREWARM_RECOMMENDER,
  recommenderUrl: e.PREWARM_RECOMMENDER_URL,
  recommenderTimeoutMs: e.PREWARM_RECOMMENDER_TIMEOUT_MS,
  recommenderToken: e.PREWARM_RECOMMENDER_TOKEN,
  recommenderNeighbours: e.PREWARM_RECOMMENDER_NEIGHBOURS,
  flushIntervalMs: e.PREWARM_FLUSH_INTERVAL_MS,
  flushMaxBatch: e.PREWARM_FLUSH_MAX_BATCH,
  /** Events held while Postgres is away; past it the API answers 503 rather than acknowledge. */
  eventBufferMax: e.PREWARM_EVENT_BUFFER_MAX,
  workerConcurrency: e.PREWARM_WORKER_CONCURRENCY,
  shutdownTimeoutMs: e.PREWARM_SHUTDOWN_TIMEOUT_MS,
  /** Window length the scheduled propensity retraining trains for. */
  propensityWindowMs: e.PREWARM_PROPENSITY_WINDOW,
  /** The scheduler retrains the propensity model when the newest is older than this. */
  propensityRetrainEveryMs: e.PREWARM_PROPENSITY_RETRAIN_EVERY,
  /** Live AP below the model's trained AP (or calibration error above its trained one) by more than this is drift: retrain early. */
  propensityDriftMargin: e.PREWARM_PROPENSITY_DRIFT_MARGIN,
  /** A model the scheduler trains while another serves scores in shadow until the outcomes promote or reject it. */
  propensityChallenger: e.PREWARM_PROPENSITY_CHALLENGER === 'on',
  /** Partitions of logins, serves, predictions, recommendations wholly older than this are dropped. */
  retentionMs: e.PREWARM_RETENTION,
  /** How often the scheduler sweeps running runs for chunks whose jobs were lost (Redis restarted empty) or failed. */
  sweepIntervalMs: e.PREWARM_SWEEP_INTERVAL,
  /** Predictions rows a run keeps for unselected, non-holdout users (a weighted uniform sample). */
  planPredictionSample: e.PREWARM_PLAN_PREDICTION_SAMPLE,
  /** 0: the scheduler scores a run in its own process; K: in at least K shards on the plan-shard queue, which `prewarm worker` processes take. */
  planShards: e.PREWARM_PLAN_SHARDS,
}));

export type Config = z.output<typeof configSchema>;

/** Parses and freezes the configuration; throws PREWARM_ERR_CONFIG naming each bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Readonly<Config> {
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const parsed = configSchema.safeParse(present);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new PrewarmError('PREWARM_ERR_CONFIG', `invalid configuration: ${problems.join('; ')}`);
  }
  const config = parsed.data;
  if (config.defaultLimit > config.maxLimit) {
    throw new PrewarmError('PREWARM_ERR_CONFIG', 'invalid configuration: PREWARM_DEFAULT_LIMIT: must not exceed PREWARM_MAX_LIMIT');
  }
  // A service token must not open the operator endpoints.
  if (config.adminToken !== undefined && config.apiTokens.includes(config.adminToken)) {
    throw new PrewarmError('PREWARM_ERR_CONFIG', 'invalid configuration: PREWARM_ADMIN_TOKEN: must differ from every PREWARM_API_TOKENS token');
  }
  if (config.recommender === 'http' && config.recommenderUrl === undefined) {
    throw new PrewarmError('PREWARM_ERR_CONFIG', 'invalid configuration: PREWARM_RECOMMENDER_URL: required when PREWARM_RECOMMENDER=http');
  }
  return Object.freeze(config);
}

/** Removes credentials from a connection URL before it is logged or printed. */
export function redactUrl(text: string): string {
  try {
    const parsed = new URL(text);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '<unparseable url>';
  }
}
