import type { Clock } from '../clock.ts';
import { withTransaction, type Pool, type Queryable } from '../db/pool.ts';
import { formatDuration, parseDuration } from '../duration.ts';
import { PrewarmError } from '../errors.ts';
import { validateSchedule } from './cron.ts';
import { formatPolicy, parsePolicy, type Policy } from './policy.ts';
import { windowSql, type WindowRow } from './sql.ts';
import { DEFAULT_TIMING, type TimingMode, type WindowTiming } from './timing-settings.ts';
import { windowTimingSql, type WindowTimingRow } from './timing-sql.ts';

/** A batch window (docs/design.md, "window"), as stored in `windows`. */
export interface Window {
  name: string;
  /** node-cron expression, 5 fields (minute first) or 6 (second first). */
  cron: string;
  /** IANA time zone the cron expression is read in. */
  timezone: string;
  /** The period whose logins a run predicts: [occurrence, occurrence + horizon). */
  horizonMs: number;
  /** How long the window's sets stay fresh, from the occurrence: expires_at = scheduled_for + ttl. */
  ttlMs: number;
  policy: Policy;
  /** Users per queued job. */
  chunkSize: number;
  /** 0–100; chunks of a higher-priority window are taken from the queue first. */
  priority: number;
  /** Share of the unselected users precomputed anyway, flagged as holdout. */
  holdoutRate: number;
  /** When the selected users are computed: all at the occurrence, or each before their likely login (timing.ts). */
  timing: WindowTiming;
  enabled: boolean;
  createdAt: Date;
  updatedAt: Date;
}

/** What `prewarm windows set` may change; omitted fields keep their value (or the default). */
export interface WindowSettings {
  cron?: string;
  timezone?: string;
  /** Milliseconds, or a duration such as `24h`. */
  horizon?: number | string;
  /** Milliseconds, or a duration such as `24h`. */
  ttl?: number | string;
  /** A Policy or its SPEC (`coverage:0.8`). */
  policy?: Policy | string;
  chunkSize?: number;
  priority?: number;
  holdoutRate?: number;
  /** `midnight` (all at the occurrence) or `predicted` (each user before their likely login). */
  timing?: TimingMode;
  /** Slot length of predicted compute times: milliseconds or a duration such as `1h`. */
  timingSlot?: number | string;
  /** Accepted chance that a user's first login comes before their set, [0, 0.5]. */
  timingRisk?: number;
  enabled?: boolean;
}

export const WINDOW_DEFAULTS = Object.freeze({
  timezone: 'UTC',
  ttlMs: 86_400_000,
  policy: 'coverage:0.8',
  chunkSize: 500,
  priority: 0,
  holdoutRate: 0.01,
  enabled: true,
});

export const MAX_CHUNK_SIZE = 10_000;
export const MAX_PRIORITY = 100;
export const MAX_HOLDOUT_RATE = 0.5;
export const MAX_TIMING_RISK = 0.5;
const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

export type WindowDefinition = Omit<Window, 'createdAt' | 'updatedAt'>;

function bad(message: string): PrewarmError {
  return new PrewarmError('PREWARM_ERR_BAD_WINDOW', message);
}

function durationMs(what: string, value: number | string): number {
  let ms: number;
  try {
    ms = typeof value === 'number' ? value : parseDuration(value);
  } catch (error) {
    throw new PrewarmError('PREWARM_ERR_BAD_WINDOW', `${what}: ${(error as Error).message}`, { cause: error });
  }
  if (!Number.isSafeInteger(ms) || ms <= 0) throw bad(`${what} must be a positive duration, not ${typeof value === 'number' ? `${value} ms` : `"${value}"`}`);
  return ms;
}

function integerIn(what: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw bad(`${what} must be a whole number from ${min} to ${max}, not ${value}`);
  return value;
}

export function validateWindowName(name: string): string {
  if (!NAME_PATTERN.test(name)) throw bad(`window name "${name}" must be 1–64 letters, digits, "_", "." or "-"`);
  return name;
}

/**
 * Merges settings into an existing window (or the defaults, for a new one) and validates the
 * result. Every refusal is a PREWARM_ERR_BAD_WINDOW (or BAD_POLICY) whose message names the
 * field and the fix.
 */
export function resolveWindow(name: string, settings: WindowSettings, existing?: WindowDefinition): WindowDefinition {
  validateWindowName(name);
  const cron = settings.cron ?? existing?.cron;
  if (cron === undefined) throw bad(`window "${name}" does not exist yet: --cron is required to create it`);
  const timezone = settings.timezone ?? existing?.timezone ?? WINDOW_DEFAULTS.timezone;
  validateSchedule(cron, timezone);

  const ttlMs = settings.ttl !== undefined ? durationMs('ttl', settings.ttl) : existing?.ttlMs;
  const horizonMs = settings.horizon !== undefined ? durationMs('horizon', settings.horizon) : existing?.horizonMs;
  // A new window's horizon and TTL default to each other, then to 24 h.
  const resolvedTtl = ttlMs ?? horizonMs ?? WINDOW_DEFAULTS.ttlMs;
  const resolvedHorizon = horizonMs ?? resolvedTtl;

  let policy: Policy;
  if (settings.policy === undefined) policy = existing?.policy ?? parsePolicy(WINDOW_DEFAULTS.policy);
  else policy = typeof settings.policy === 'string' ? parsePolicy(settings.policy) : parsePolicy(formatPolicy(settings.policy));

  const holdoutRate = settings.holdoutRate ?? existing?.holdoutRate ?? WINDOW_DEFAULTS.holdoutRate;
  if (!Number.isFinite(holdoutRate) || holdoutRate < 0 || holdoutRate > MAX_HOLDOUT_RATE) {
    throw bad(`holdout rate must be a fraction from 0 to ${MAX_HOLDOUT_RATE}, not ${holdoutRate}`);
  }
  const timing = resolveTiming(settings, existing?.timing, resolvedHorizon);
  return {
    name,
    cron: cron.trim(),
    timezone,
    horizonMs: resolvedHorizon,
    ttlMs: resolvedTtl,
    policy,
    chunkSize: integerIn('chunk size', settings.chunkSize ?? existing?.chunkSize ?? WINDOW_DEFAULTS.chunkSize, 1, MAX_CHUNK_SIZE),
    priority: integerIn('priority', settings.priority ?? existing?.priority ?? WINDOW_DEFAULTS.priority, 0, MAX_PRIORITY),
    holdoutRate,
    timing,
    enabled: settings.enabled ?? existing?.enabled ?? WINDOW_DEFAULTS.enabled,
  };
}

function resolveTiming(settings: WindowSettings, existing: WindowTiming | undefined, horizonMs: number): WindowTiming {
  const mode = settings.timing ?? existing?.mode ?? DEFAULT_TIMING.mode;
  if (mode !== 'midnight' && mode !== 'predicted') throw bad(`timing must be "midnight" or "predicted", not "${String(mode)}"`);
  const slotMs = settings.timingSlot !== undefined ? durationMs('timing slot', settings.timingSlot) : (existing?.slotMs ?? DEFAULT_TIMING.slotMs);
  if (mode === 'predicted' && slotMs >= horizonMs) throw bad(`timing slot (${formatDuration(slotMs)}) must be shorter than the horizon (${formatDuration(horizonMs)}) to time anything`);
  const risk = settings.timingRisk ?? existing?.risk ?? DEFAULT_TIMING.risk;
  if (!Number.isFinite(risk) || risk < 0 || risk > MAX_TIMING_RISK) throw bad(`timing risk must be a fraction from 0 to ${MAX_TIMING_RISK}, not ${risk}`);
  return { mode, slotMs, risk };
}

export function toWindow(row: WindowRow, timingRow?: WindowTimingRow): Window {
  return {
    name: row.name,
    cron: row.cron,
    timezone: row.timezone,
    horizonMs: row.horizon_ms,
    ttlMs: row.ttl_ms,
    policy: parsePolicy(row.policy),
    chunkSize: row.chunk_size,
    priority: row.priority,
    holdoutRate: row.holdout_rate,
    timing: timingRow ? { mode: timingRow.timing, slotMs: Number(timingRow.timing_slot_ms), risk: Number(timingRow.timing_risk) } : { ...DEFAULT_TIMING },
    enabled: row.enabled,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** A window as operators read it (`windows list --json`). */
export function describeWindow(window: Window): Record<string, unknown> {
  return {
    name: window.name,
    cron: window.cron,
    timezone: window.timezone,
    horizon: formatDuration(window.horizonMs),
    ttl: formatDuration(window.ttlMs),
    policy: formatPolicy(window.policy),
    chunkSize: window.chunkSize,
    priority: window.priority,
    holdoutRate: window.holdoutRate,
    timing: window.timing.mode,
    timingSlot: formatDuration(window.timing.slotMs),
    timingRisk: window.timing.risk,
    enabled: window.enabled,
    updatedAt: window.updatedAt.toISOString(),
  };
}

export interface WindowStore {
  list(): Promise<Window[]>;
  listEnabled(): Promise<Window[]>;
  get(name: string): Promise<Window | undefined>;
  /** Like get, but throws PREWARM_ERR_UNKNOWN_WINDOW. */
  require(name: string): Promise<Window>;
  /** Creates the window or changes the given settings; validated before anything is written. */
  set(name: string, settings: WindowSettings): Promise<{ window: Window; created: boolean }>;
  setEnabled(name: string, enabled: boolean): Promise<Window>;
  /** Past runs stay (batch_runs keeps the name). */
  delete(name: string): Promise<void>;
}

export interface WindowStoreDeps {
  pool: Pool;
  /** Stamps updated_at; a replay passes its virtual clock. */
  clock: Clock;
}

/**
 * Windows in Postgres. Schedulers re-read them at every tick, so a change takes effect at the
 * next tick of every replica without a restart.
 */
export function createWindowStore({ pool, clock }: WindowStoreDeps): WindowStore {
  // The timing settings (migration 0016) are read beside the window's row, by name.
  async function withTiming(db: Queryable, rows: readonly WindowRow[]): Promise<Window[]> {
    if (rows.length === 0) return [];
    const timings = new Map((await db.query<WindowTimingRow>(windowTimingSql.of(rows.map((row) => row.name)))).rows.map((row) => [row.name, row]));
    return rows.map((row) => toWindow(row, timings.get(row.name)));
  }
  async function fetch(db: Queryable, name: string, forUpdate = false): Promise<Window | undefined> {
    const result = await db.query<WindowRow>(windowSql.get(name, forUpdate));
    return (await withTiming(db, result.rows))[0];
  }
  function unknown(name: string): PrewarmError {
    return new PrewarmError('PREWARM_ERR_UNKNOWN_WINDOW', `no window named "${name}" (see prewarm windows list)`);
  }
  return {
    async list() {
      return withTiming(pool, (await pool.query<WindowRow>(windowSql.list(false))).rows);
    },
    async listEnabled() {
      return withTiming(pool, (await pool.query<WindowRow>(windowSql.list(true))).rows);
    },
    get: (name) => fetch(pool, name),
    async require(name) {
      const window = await fetch(pool, name);
      if (!window) throw unknown(name);
      return window;
    },
    async set(name, settings) {
      validateWindowName(name);
      return withTransaction(pool, async (client) => {
        const existing = await fetch(client, name, true);
        const definition = resolveWindow(name, settings, existing);
        const result = await client.query<WindowRow & { created: boolean }>(
          windowSql.upsert({
            name: definition.name,
            cron: definition.cron,
            timezone: definition.timezone,
            horizon_ms: definition.horizonMs,
            ttl_ms: definition.ttlMs,
            policy: formatPolicy(definition.policy),
            chunk_size: definition.chunkSize,
            priority: definition.priority,
            holdout_rate: definition.holdoutRate,
            enabled: definition.enabled,
            updated_at: clock.now(),
          }),
        );
        const row = result.rows[0] as WindowRow & { created: boolean };
        const { mode, slotMs, risk } = definition.timing;
        await client.query(windowTimingSql.set(definition.name, mode, slotMs, risk));
        return { window: toWindow(row, { name: row.name, timing: mode, timing_slot_ms: slotMs, timing_risk: risk }), created: row.created };
      });
    },
    async setEnabled(name, enabled) {
      const result = await pool.query<WindowRow>(windowSql.setEnabled(name, enabled, clock.now()));
      if (!result.rows[0]) throw unknown(name);
      return (await withTiming(pool, result.rows))[0] as Window;
    },
    async delete(name) {
      const result = await pool.query(windowSql.delete(name));
      if (result.rowCount === 0) throw unknown(name);
    },
  };
}
