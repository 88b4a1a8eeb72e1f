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
    const key = this.cache.keyFor({
      query,
      topK,
      ...this.model.generationParameters,
      corpusVersion: this.knowledge.version,
      promptVersion: PROMPT_VERSION,
    });
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
