import { hash } from 'node:crypto';
import { CACHE_MANAGER, type Cache } from '@nestjs/cache-manager';
import { Inject, Injectable, Optional } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { cacheConfig } from '../config/cache.config.js';
import type { Excerpt } from '../knowledge/excerpt.js';
import { RedisConnection } from '../redis/redis-connection.js';
import { withinDeadline } from '../common/deadline.js';

export interface CachedAnswer {
  answer: string;
  excerpts: Excerpt[];
  /** The model target that wrote it, as configured; absent from entries written before targets were recorded. */
  model?: string;
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
  /** The knowledge corpus the excerpts came from (KnowledgeBase.version). */
  corpusVersion: string;
  /** The prompt template the model was asked with (PROMPT_VERSION). */
  promptVersion: string;
}

/** Cumulative lookups by result since start; `errors` also counts writes the store failed or did not answer in time. */
export interface AnswerCacheStats {
  store: 'memory' | 'redis';
  freshHits: number;
  staleHits: number;
  misses: number;
  errors: number;
}

/** A cache that hangs must not hold the request: past this it is a miss. */
const CACHE_DEADLINE_MS = 250;
/** What withinDeadline gives for a store that failed or did not answer in time, so it is told apart from a miss. */
const STORE_FAILED = Symbol('STORE_FAILED');
const storeFailed = (): typeof STORE_FAILED => STORE_FAILED;
const KEY_PREFIX = 'assistant:answer:v2:';
/** Clocks of replicas sharing one Redis disagree a little; an entry from further in the future than this is bogus. */
const CLOCK_SKEW_MS = 60_000;

/** Case, surrounding and repeated white space do not make a different question. */
export function normaliseQuery(query: string): string {
  return query.normalize('NFKC').trim().replace(/\s+/g, ' ').toLowerCase();
}

/**
 * Earlier answers, kept for CACHE_STALE_TTL_SECONDS and served as fresh for CACHE_TTL_SECONDS.
 * A store that fails or hangs is a miss to the caller, never an error; stats() counts it apart.
 */
@Injectable()
export class AnswerCache {
  private readonly counts: Omit<AnswerCacheStats, 'store'> = { freshHits: 0, staleHits: 0, misses: 0, errors: 0 };

  constructor(
    @Inject(CACHE_MANAGER) private readonly cache: Cache,
    @Inject(cacheConfig.KEY) private readonly config: ConfigType<typeof cacheConfig>,
    @Optional() private readonly redis?: RedisConnection,
  ) {}

  keyFor({ query, topK, model, maxNewTokens, temperature, corpusVersion, promptVersion }: AnswerKey): string {
    const identity = JSON.stringify([normaliseQuery(query), topK, model, maxNewTokens, temperature, corpusVersion, promptVersion]);
    return KEY_PREFIX + hash('sha256', identity, 'base64url');
  }

  /**
   * The entry for `key` if it is younger than the stale TTL. An entry without the shape of an answer, or dated
   * in the future, is a miss (the next answer overwrites it): whatever is in a shared Redis is not trusted blindly.
   */
  async lookup(key: string): Promise<CachedAnswer | undefined> {
    const entry = this.storeDown() ? STORE_FAILED : await withinDeadline(this.cache.get<unknown>(key), CACHE_DEADLINE_MS, storeFailed);
    if (entry === STORE_FAILED) {
      this.counts.errors++;
      return undefined;
    }
    const live = isCachedAnswer(entry) && this.isLive(entry) ? entry : undefined;
    if (!live) this.counts.misses++;
    else if (this.isFresh(live)) this.counts.freshHits++;
    else this.counts.staleHits++;
    return live;
  }

  isFresh(entry: CachedAnswer): boolean {
    return this.ageMs(entry) < this.config.freshTtlMs;
  }

  async store(key: string, answer: Omit<CachedAnswer, 'createdAt'>): Promise<void> {
    const written = this.storeDown()
      ? STORE_FAILED
      : await withinDeadline(
          this.cache.set<CachedAnswer>(key, { ...answer, createdAt: Date.now() }, this.config.staleTtlMs),
          CACHE_DEADLINE_MS,
          storeFailed,
        );
    if (written === STORE_FAILED) this.counts.errors++;
  }

  stats(): AnswerCacheStats {
    return { store: this.config.redisUrl ? 'redis' : 'memory', ...this.counts };
  }

  /** Redis disconnected or not answering: asking it would only wait (or queue) for nothing. */
  private storeDown(): boolean {
    return this.redis?.client !== undefined && !this.redis.isReady;
  }

  /** Younger than the stale TTL, and not from further in the future than clocks can disagree. */
  private isLive(entry: CachedAnswer): boolean {
    const age = this.ageMs(entry);
    return age > -CLOCK_SKEW_MS && age < this.config.staleTtlMs;
  }

  private ageMs(entry: CachedAnswer): number {
    return Date.now() - entry.createdAt;
  }
}

function isCachedAnswer(value: unknown): value is CachedAnswer {
  if (typeof value !== 'object' || value === null) return false;
  const { answer, excerpts, createdAt, model } = value as Record<string, unknown>;
  return (
    typeof answer === 'string' &&
    Number.isFinite(createdAt) &&
    (model === undefined || typeof model === 'string') &&
    Array.isArray(excerpts) &&
    excerpts.every(isExcerpt)
  );
}

function isExcerpt(value: unknown): value is Excerpt {
  if (typeof value !== 'object' || value === null) return false;
  const { documentId, title, text, score } = value as Record<string, unknown>;
  return typeof documentId === 'string' && typeof title === 'string' && typeof text === 'string' && Number.isFinite(score);
}
