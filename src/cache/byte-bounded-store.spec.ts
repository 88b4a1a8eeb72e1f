import { describe, expect, it } from '@jest/globals';
import type { ConfigType } from '@nestjs/config';
import { createCache } from 'cache-manager';
import type { cacheConfig } from '../config/cache.config.js';
import type { Excerpt } from '../knowledge/excerpt.js';
import { AnswerCache } from './answer-cache.js';
import { ByteBoundedStore, MEMORY_CACHE_MAX_BYTES, memoryKeyv } from './byte-bounded-store.js';

const CONFIG: ConfigType<typeof cacheConfig> = { redisUrl: undefined, freshTtlMs: 60_000, staleTtlMs: 3_600_000, coalesceWaitMs: 10_000 };

/** The embedded answer cache as the module builds it, over a store of `maxBytes`. */
function embeddedCache(maxBytes = MEMORY_CACHE_MAX_BYTES, config = CONFIG): { answers: AnswerCache; store: ByteBoundedStore } {
  const store = new ByteBoundedStore(maxBytes);
  return { answers: new AnswerCache(createCache({ stores: [memoryKeyv(store)] }), config), store };
}

const excerpt = (text: string): Excerpt => ({ documentId: 'guide', title: 'Guide › Half-open', text, score: 2.5 });

describe('the embedded answer cache', () => {
  it('holds at most its bytes: past them the least recently used answers go, the newest and the one just read stay', async () => {
    const { answers, store } = embeddedCache(100_000);
    const answer = 'x'.repeat(2_000);
    await answers.store('first', { answer, excerpts: [] });
    for (let i = 0; i < 10; i++) await answers.store(`early ${i}`, { answer, excerpts: [] });
    // Read: now the most recently used.
    expect(await answers.lookup('first')).toMatchObject({ answer });
    for (let i = 0; i < 100; i++) await answers.store(`later ${i}`, { answer, excerpts: [] });
    expect(store.size).toBeLessThanOrEqual(100_000);
    // Some 4 KB each (two bytes a character): about 23 fit.
    expect(store.size).toBeGreaterThan(80_000);
    expect(await answers.lookup('early 0')).toBeUndefined();
    expect(await answers.lookup('later 99')).toMatchObject({ answer });
  });

  it('never holds an answer larger than all its bytes', async () => {
    const { answers, store } = embeddedCache(10_000);
    await answers.store('huge', { answer: 'x'.repeat(6_000), excerpts: [] });
    expect(await answers.lookup('huge')).toBeUndefined();
    expect(store.size).toBe(0);
  });

  it("counts an excerpt as a reference to the knowledge base's text, not as a copy of it", async () => {
    const { answers, store } = embeddedCache();
    await answers.store('one', { answer: 'An answer.', excerpts: [excerpt('a'), excerpt('b'), excerpt('c')] });
    const withShort = store.size;
    const long = 'Half-open lets one trial call through. '.repeat(200);
    await answers.store('two', { answer: 'An answer.', excerpts: [excerpt(long), excerpt(long), excerpt(long)] });
    expect(store.size).toBe(2 * withShort);
    // What was stored is what a lookup gives: the same objects, not copies.
    const stored = [excerpt(long)];
    await answers.store('same objects', { answer: 'An answer.', excerpts: stored });
    expect((await answers.lookup('same objects'))?.excerpts[0]).toBe(stored[0]);
  });

  it('lets an answer go once the stale TTL has passed', async () => {
    const { answers, store } = embeddedCache(MEMORY_CACHE_MAX_BYTES, { ...CONFIG, freshTtlMs: 1, staleTtlMs: 20 });
    await answers.store('brief', { answer: 'Soon gone.', excerpts: [] });
    expect(await answers.lookup('brief')).toMatchObject({ answer: 'Soon gone.' });
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(await answers.lookup('brief')).toBeUndefined();
    expect(store.size).toBe(0);
  });
});
