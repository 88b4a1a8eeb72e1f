import { hash } from 'node:crypto';
import { CACHE_MANAGER, type Cache } from '@nestjs/cache-manager';
import { Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { cacheConfig } from '../config/cache.config.js';
import type { Excerpt } from '../knowledge/excerpt.js';

export interface CachedAnswer {
  answer: string;
  excerpts: Excerpt[];
  /** Epoch ms; one read tells fresh from stale. */
  createdAt: number;
}

/** Everything that changes an answer; two requests that agree on all of it share one entry. */
export interface AnswerKey {
  query: string;
  topK: number;
  model: string;
  maxNewTokens: number;
  temperature: number;
}

/** A cache that hangs must not hold the request: past this it is a miss. */
const CACHE_DEADLINE_MS = 250;
const KEY_PREFIX = 'assistant:answer:v1:';

/** Case, surrounding and repeated white space do not make a different question. */
export function normaliseQuery(query: string): string {
  return query.normalize('NFKC').trim().replace(/\s+/g, ' ').toLowerCase();
}

/**
 * Earlier answers, kept for CACHE_STALE_TTL_SECONDS and served as fresh for CACHE_TTL_SECONDS.
 * A store that fails or hangs is a miss, never an error.
 */
@Injectable()
export class AnswerCache {
  constructor(
    @Inject(CACHE_MANAGER) private readonly cache: Cache,
    @Inject(cacheConfig.KEY) private readonly config: ConfigType<typeof cacheConfig>,
  ) {}

  keyFor({ query, topK, model, maxNewTokens, temperature }: AnswerKey): string {
    const identity = JSON.stringify([normaliseQuery(query), topK, model, maxNewTokens, temperature]);
    return KEY_PREFIX + hash('sha256', identity, 'base64url');
  }

  /** The entry for `key` if it is younger than the stale TTL. */
  async lookup(key: string): Promise<CachedAnswer | undefined> {
    const entry = await withinDeadline(this.cache.get<CachedAnswer>(key));
    return entry && this.ageMs(entry) < this.config.staleTtlMs ? entry : undefined;
  }

  isFresh(entry: CachedAnswer): boolean {
    return this.ageMs(entry) < this.config.freshTtlMs;
  }

  async store(key: string, answer: Omit<CachedAnswer, 'createdAt'>): Promise<void> {
    await withinDeadline(this.cache.set<CachedAnswer>(key, { ...answer, createdAt: Date.now() }, this.config.staleTtlMs));
  }

  private ageMs(entry: CachedAnswer): number {
    return Date.now() - entry.createdAt;
  }
}

async function withinDeadline<T>(operation: Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), CACHE_DEADLINE_MS);
  });
  try {
    return await Promise.race([operation, deadline]);
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}
