import { registerAs } from '@nestjs/config';
import { environment } from './environment.js';

export const cacheConfig = registerAs('cache', () => {
  const env = environment();
  return {
    redisUrl: env.REDIS_URL,
    freshTtlMs: env.CACHE_TTL_SECONDS * 1000,
    staleTtlMs: env.CACHE_STALE_TTL_SECONDS * 1000,
    /** With Redis: the longest a replica waits for another replica's answer to the same question (CACHE_COALESCE_WAIT_SECONDS). */
    coalesceWaitMs: Math.round(env.CACHE_COALESCE_WAIT_SECONDS * 1000),
  };
});
