import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';

describe('configuration', () => {
  it('has working defaults, frozen', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ databaseUrl: 'postgres://postgres@127.0.0.1:5432/test', cacheRedisUrl: 'redis://127.0.0.1:6379', workerConcurrency: 4, maxLimit: 100 });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('reads the environment, empty values as unset', () => {
    const config = loadConfig({ PREWARM_RECOMMENDER: 'http', PREWARM_RECOMMENDER_URL: 'http://127.0.0.1:9000', PREWARM_WORKER_CONCURRENCY: '8', PREWARM_CACHE_REDIS_URL: '', PREWARM_ON_DEMAND_TTL: '90m' });
    expect(config).toMatchObject({ recommender: 'http', recommenderUrl: 'http://127.0.0.1:9000', workerConcurrency: 8, cacheRedisUrl: 'redis://127.0.0.1:6379', onDemandTtlMs: 90 * 60_000 });
  });

  it('names every bad variable, and never echoes a secret', () => {
    const attempt = () => loadConfig({ PREWARM_RECOMMENDER: 'python', PREWARM_WORKER_CONCURRENCY: '0', PREWARM_ADMIN_TOKEN: 'short-secret' });
    expect(attempt).toThrow(expect.objectContaining({ code: 'PREWARM_ERR_CONFIG' }));
    const message = (() => {
      try {
        attempt();
      } catch (error) {
        return (error as Error).message;
      }
      return '';
    })();
    expect(message).toMatch(/PREWARM_RECOMMENDER: /);
    expect(message).toMatch(/PREWARM_WORKER_CONCURRENCY: /);
    expect(message).toMatch(/PREWARM_ADMIN_TOKEN: must be at least 16 characters long/);
    expect(message).not.toContain('short-secret');
    expect(() => loadConfig({ PREWARM_DEFAULT_LIMIT: '50', PREWARM_MAX_LIMIT: '20' })).toThrow(/PREWARM_DEFAULT_LIMIT: must not exceed PREWARM_MAX_LIMIT/);
    expect(() => loadConfig({ PREWARM_RECOMMENDER: 'http' })).toThrow(/PREWARM_RECOMMENDER_URL: required when PREWARM_RECOMMENDER=http/);
  });
});
