import { registerAs } from '@nestjs/config';
import { environment } from './environment.js';

export const cacheConfig = registerAs('cache', () => {
  const env = environment();
  return {
    redisUrl: env.REDIS_URL,
    freshTtlMs: env.CACHE_TTL_SECONDS * 1000,
    staleTtlMs: env.CACHE_STALE_TTL_SECONDS * 1000,
  };
});
