import { Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { AnswerCache, type CachedAnswer } from '../cache/answer-cache.js';
import type { CircuitBreaker } from '../circuit-breaker/circuit-breaker.js';
import { BulkheadFullError, CallTimeoutError, CircuitOpenError } from '../circuit-breaker/circuit-breaker.errors.js';
import { CircuitBreakerRegistry } from '../circuit-breaker/circuit-breaker.registry.js';
import { circuitBreakerConfig } from '../config/circuit-breaker.config.js';
import { ModelCallFailedError, ModelUnconfiguredError } from '../hf-textgen/hf-textgen.errors.js';
import { HfTextGenService } from '../hf-textgen/hf-textgen.service.js';
import type { Excerpt } from '../knowledge/excerpt.js';
import { KnowledgeBase } from '../knowledge/knowledge-base.js';
import type { AssistantAnswerDto } from './assistant-answer.dto.js';
import type { AnswerEvent } from './answer-events.js';
import { type CircuitStatus, type FallbackReason, UpstreamUnavailableError } from './assistant.errors.js';
import { answerFromExcerpts, buildPrompt, PROMPT_VERSION } from './prompt.builder.js';
import { DEFAULT_TOP_K } from './query.dto.js';

export interface AssistantQuery {
  query: string;
  topK?: number;
}

/** What `answer` resolves to: the DTO class is its one definition, and also what the OpenAPI document shows. */
export type AssistantAnswer = AssistantAnswerDto;

interface Outage {
  reason: FallbackReason;
  retryAfterSeconds: number;
}

/** Answers a question: fresh cache → model → stale cache → excerpts → unavailable (503). */
@Injectable()
export class AssistantService {
  private readonly breaker: CircuitBreaker;

  constructor(
    private readonly cache: AnswerCache,
    private readonly knowledge: KnowledgeBase,
    private readonly model: HfTextGenService,
    breakers: CircuitBreakerRegistry,
    @Inject(circuitBreakerConfig.KEY) private readonly breakerConfig: ConfigType<typeof circuitBreakerConfig>,
  ) {
    this.breaker = breakers.get(breakers.defaultName);
  }

  /** `signal`: aborted when the caller went away; the model call is then aborted too (and does not count). */
  async answer({ query, topK = DEFAULT_TOP_K }: AssistantQuery, signal?: AbortSignal): Promise<AssistantAnswer> {
    const key = this.cacheKey(query, topK);
    const cached = await this.cache.lookup(key);
    if (cached && this.cache.isFresh(cached)) return this.fromCache(cached);

    const excerpts = this.knowledge.search(query, topK);
    let outage: Outage;
    try {
      const generation = await this.model.generate(buildPrompt(query, excerpts), signal);
      await this.cache.store(key, { answer: generation.text, excerpts });
      return this.fromModel(generation.text, excerpts);
    } catch (error) {
      // The caller left: no fallback to build, nothing to count as served.
      if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : error;
      outage = this.describeOutage(error);
    }

    if (cached) return this.fromStaleCache(cached, outage);
    if (excerpts.length > 0) return this.fromExcerpts(excerpts, outage);
    throw new UpstreamUnavailableError(outage.reason, outage.retryAfterSeconds, this.circuitStatus());
  }

  /**
   * The same answer, streamed (the contract's Streaming section): `excerpts`, then the model's `token`s as they come,
   * then `done` with the body `answer` would give. A fresh cached answer comes as one token. The model failing before
   * its first token: the fallbacks, as `done`. After tokens were sent: `done` with the partial answer, degraded,
   * `interrupted` (never cached). Nothing to fall back on: UpstreamUnavailableError before any event, which is why
   * the excerpts event waits for the first token when there is no fallback to send instead.
   */
  async *stream({ query, topK = DEFAULT_TOP_K }: AssistantQuery, signal?: AbortSignal): AsyncGenerator<AnswerEvent, void, undefined> {
    const key = this.cacheKey(query, topK);
    const cached = await this.cache.lookup(key);
    if (cached && this.cache.isFresh(cached)) {
      yield { type: 'excerpts', excerpts: cached.excerpts };
      yield { type: 'token', text: cached.answer };
      yield { type: 'done', answer: this.fromCache(cached) };
      return;
    }

    const excerpts = this.knowledge.search(query, topK);
    const generation = this.model.generateStream(buildPrompt(query, excerpts), signal);
    // Read below; until then its rejection must not count as unhandled.
    generation.catch(() => undefined);
    let pieces: AsyncIterableIterator<string> | undefined;
    try {
      const hasFallback = cached !== undefined || excerpts.length > 0;
      if (hasFallback) yield { type: 'excerpts', excerpts };
      try {
        pieces = await generation;
      } catch (error) {
        if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : error;
        const outage = this.describeOutage(error);
        if (cached) yield { type: 'done', answer: this.fromStaleCache(cached, outage) };
        else if (excerpts.length > 0) yield { type: 'done', answer: this.fromExcerpts(excerpts, outage) };
        else throw new UpstreamUnavailableError(outage.reason, outage.retryAfterSeconds, this.circuitStatus());
        return;
      }
      if (!hasFallback) yield { type: 'excerpts', excerpts };

      let text = '';
      try {
        for await (const piece of pieces) {
          text += piece;
          yield { type: 'token', text: piece };
        }
      } catch (error) {
        if (signal?.aborted) return;
        const outage: Outage = { reason: 'interrupted', retryAfterSeconds: this.describeOutage(error).retryAfterSeconds };
        yield { type: 'done', answer: this.respond({ answer: text, source: 'llm', excerpts }, outage) };
        return;
      }
      await this.cache.store(key, { answer: text.trim(), excerpts });
      yield { type: 'done', answer: this.fromModel(text.trim(), excerpts) };
    } finally {
      // Ended early (the client left, or an error above): the model's stream, started or not, is ended and aborted.
      if (pieces) await pieces.return?.();
      else
        void generation.then(
          (started) => started.return?.(),
          () => undefined,
        );
    }
  }

  private cacheKey(query: string, topK: number): string {
    return this.cache.keyFor({
      query,
      topK,
      ...this.model.generationParameters,
      corpusVersion: this.knowledge.version,
      promptVersion: PROMPT_VERSION,
    });
  }

  private fromCache(cached: CachedAnswer): AssistantAnswer {
    return this.respond({ answer: cached.answer, source: 'cache', excerpts: cached.excerpts, cachedAt: iso(cached.createdAt) });
  }

  private fromModel(answer: string, excerpts: Excerpt[]): AssistantAnswer {
    return this.respond({ answer, source: 'llm', excerpts });
  }

  private fromStaleCache(cached: CachedAnswer, outage: Outage): AssistantAnswer {
    this.breaker.recordFallback();
    return this.respond({ answer: cached.answer, source: 'cache', excerpts: cached.excerpts, cachedAt: iso(cached.createdAt) }, outage);
  }

  private fromExcerpts(excerpts: Excerpt[], outage: Outage): AssistantAnswer {
    this.breaker.recordFallback();
    return this.respond({ answer: answerFromExcerpts(excerpts), source: 'excerpts', excerpts }, outage);
  }

  private respond(body: Pick<AssistantAnswer, 'answer' | 'source' | 'excerpts' | 'cachedAt'>, outage?: Outage): AssistantAnswer {
    return {
      answer: body.answer,
      source: body.source,
      degraded: outage !== undefined,
      fallbackReason: outage?.reason ?? null,
      excerpts: body.excerpts,
      circuit: this.circuitStatus(),
      ...(body.cachedAt !== undefined ? { cachedAt: body.cachedAt } : {}),
      ...(outage ? { retryAfterSeconds: outage.retryAfterSeconds } : {}),
    };
  }

  /** Why the model gave no answer, and when asking again could reach it (never later than the longest open period). */
  private describeOutage(error: unknown): Outage {
    if (error instanceof CircuitOpenError) return { reason: 'circuit_open', retryAfterSeconds: error.retryAfterSeconds };
    if (error instanceof BulkheadFullError) return { reason: 'overloaded', retryAfterSeconds: error.retryAfterSeconds };
    if (error instanceof ModelUnconfiguredError) {
      // Nothing will change until someone configures a model; suggest the breaker's own retry cadence.
      return {
        reason: 'upstream_unconfigured',
        retryAfterSeconds: this.breaker.retryAfterSeconds(this.breakerConfig.resetTimeoutMs / 1000),
      };
    }
    const timedOut = error instanceof CallTimeoutError || (error instanceof ModelCallFailedError && error.kind === 'timeout');
    const rateLimited = error instanceof ModelCallFailedError && error.isRateLimited;
    const upstreamHint = error instanceof ModelCallFailedError ? error.retryAfterSeconds : undefined;
    // This failure may just have opened the circuit: then the trial time is the honest answer.
    const retryAfterSeconds = this.breaker.retryAfterSeconds(upstreamHint);
    return { reason: timedOut ? 'timeout' : rateLimited ? 'rate_limited' : 'upstream_error', retryAfterSeconds };
  }

  private circuitStatus(): CircuitStatus {
    return { name: this.breaker.name, state: this.breaker.state };
  }
}

function iso(epochMs: number): string {
  return new Date(epochMs).toISOString();
}
