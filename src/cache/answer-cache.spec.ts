import { describe, expect, it } from '@jest/globals';
import type { Cache } from '@nestjs/cache-manager';
import type { ConfigType } from '@nestjs/config';
import { createCache } from 'cache-manager';
import { Keyv } from 'keyv';
import type { cacheConfig } from '../config/cache.config.js';
import { AnswerCache } from './answer-cache.js';

const CONFIG: ConfigType<typeof cacheConfig> = { redisUrl: undefined, freshTtlMs: 60_000, staleTtlMs: 3_600_000, coalesceWaitMs: 10_000 };
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

describe('AnswerCache.lookup of entries it did not write (a shared Redis is not trusted blindly)', () => {
  const EXCERPT = { documentId: 'guide', title: 'Guide', text: 'Half-open is the trial.', score: 1.5 };

  it.each<[string, unknown]>([
    ['a date a thousand years ahead (createdAt: 1e20)', { ...ANSWER, createdAt: 1e20 }],
    ['a date ten minutes ahead', { ...ANSWER, createdAt: Date.now() + 600_000 }],
    ['no createdAt', { ...ANSWER }],
    ['a createdAt that is text', { ...ANSWER, createdAt: '2030-01-01' }],
    ['an answer that is not text', { answer: 42, excerpts: [], createdAt: Date.now() }],
    ['excerpts that are not a list', { answer: 'x', excerpts: 'none', createdAt: Date.now() }],
    ['an excerpt without a score', { answer: 'x', excerpts: [{ documentId: 'd', title: 't', text: 'x' }], createdAt: Date.now() }],
    ['a bare string', 'an answer'],
    ['null', null],
  ])('treats %s as a miss', async (_case, entry) => {
    const { answers, cache } = answerCacheOver(new Keyv());
    await cache.set('key', entry);
    expect(await answers.lookup('key')).toBeUndefined();
    expect(answers.stats()).toMatchObject({ misses: 1, freshHits: 0, staleHits: 0 });
  });

  it('serves an entry whose clock is a few seconds ahead (replicas’ clocks disagree a little)', async () => {
    const { answers, cache } = answerCacheOver(new Keyv());
    await cache.set('key', { answer: 'x', excerpts: [EXCERPT], createdAt: Date.now() + 5_000 });
    expect(await answers.lookup('key')).toMatchObject({ answer: 'x', excerpts: [EXCERPT] });
  });

  it('overwrites a bogus entry with the next answer stored under its key', async () => {
    const { answers, cache } = answerCacheOver(new Keyv());
    await cache.set('key', { ...ANSWER, createdAt: 1e20 });
    await answers.store('key', { answer: 'fresh', excerpts: [EXCERPT] });
    expect(await answers.lookup('key')).toMatchObject({ answer: 'fresh' });
  });
});

describe('AnswerCache.keyFor', () => {
  const { answers } = answerCacheOver(new Keyv());
  const KEY = {
    query: 'What does half-open mean?',
    topK: 3,
    model: 'org/model',
    maxNewTokens: 512,
    temperature: 0.2,
    corpusVersion: 'corpus-a',
    promptVersion: 'prompt-a',
  };

  it('is the same for questions that differ only in case and white space', () => {
    expect(answers.keyFor({ ...KEY, query: '  what does   HALF-OPEN mean? ' })).toBe(answers.keyFor(KEY));
  });

  it.each<[string, Partial<typeof KEY>]>([
    ['an edited corpus', { corpusVersion: 'corpus-b' }],
    ['a new prompt template', { promptVersion: 'prompt-b' }],
    ['another model', { model: 'org/other' }],
    ['another topK', { topK: 4 }],
    ['another temperature', { temperature: 0.7 }],
  ])('changes with %s', (_case, change) => {
    expect(answers.keyFor({ ...KEY, ...change })).not.toBe(answers.keyFor(KEY));
  });
});
