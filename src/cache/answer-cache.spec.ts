import { describe, expect, it } from '@jest/globals';
import type { Cache } from '@nestjs/cache-manager';
import type { ConfigType } from '@nestjs/config';
import { createCache } from 'cache-manager';
import { Keyv } from 'keyv';
import type { cacheConfig } from '../config/cache.config.js';
import { AnswerCache } from './answer-cache.js';

const CONFIG: ConfigType<typeof cacheConfig> = { redisUrl: undefined, freshTtlMs: 60_000, staleTtlMs: 3_600_000 };
const ANSWER = { answer: 'One trial call goes through.', excerpts: [] };

/** A Map-shaped Keyv store that never answers, like a Redis that accepted the connection and then hung. */
const hangingStore = {
  get: () => new Promise<never>(() => undefined),
  set: () => new Promise<never>(() => undefined),
  delete: () => Promise.resolve(true),
  clear: () => Promise.resolve(),
};

function answerCacheOver(store: Keyv, config = CONFIG): { answers: AnswerCache; cache: Cache } {
  const cache: Cache = createCache({ stores: [store] });
  return { answers: new AnswerCache(cache, config), cache };
}

describe('AnswerCache.stats', () => {
  it('counts each lookup as a fresh hit, a stale hit or a miss', async () => {
    const { answers, cache } = answerCacheOver(new Keyv());
    await answers.store('fresh', ANSWER);
    await cache.set('stale', { ...ANSWER, createdAt: Date.now() - 120_000 });
    await cache.set('expired', { ...ANSWER, createdAt: Date.now() - 7_200_000 });

    await answers.lookup('fresh');
    await answers.lookup('fresh');
    await answers.lookup('stale');
    await answers.lookup('expired');
    await answers.lookup('absent');

    expect(answers.stats()).toEqual({ store: 'memory', freshHits: 2, staleHits: 1, misses: 2, errors: 0 });
  });

  it('counts a store that does not answer within the deadline as an error, not a miss, on reads and writes', async () => {
    const { answers } = answerCacheOver(new Keyv({ store: hangingStore }));
    expect(await answers.lookup('any')).toBeUndefined();
    await answers.store('any', ANSWER);
    expect(answers.stats()).toMatchObject({ misses: 0, errors: 2 });
  });

  it('counts a write the store rejects as an error, and never passes the rejection to the caller', async () => {
    const failingStore = { ...hangingStore, set: () => Promise.reject(new Error("READONLY You can't write against a read only replica")) };
    const { answers } = answerCacheOver(new Keyv({ store: failingStore, throwOnErrors: true }));
    await expect(answers.store('any', ANSWER)).resolves.toBeUndefined();
    expect(answers.stats()).toMatchObject({ misses: 0, errors: 1 });
  });

  it('names the store redis when REDIS_URL is configured', () => {
    const { answers } = answerCacheOver(new Keyv(), { ...CONFIG, redisUrl: 'redis://127.0.0.1:6379' });
    expect(answers.stats().store).toBe('redis');
  });
});
