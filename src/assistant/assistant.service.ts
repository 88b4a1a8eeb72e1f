import { Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { AnswerCache, type CachedAnswer } from '../cache/answer-cache.js';
import { assistantConfig } from '../config/assistant.config.js';
import { ModelTargets, TargetPassedError } from '../hf-textgen/model-targets.js';
import type { Excerpt } from '../knowledge/excerpt.js';
import { KnowledgeBase } from '../knowledge/knowledge-base.js';
import type { AssistantAnswerDto } from './assistant-answer.dto.js';
import type { AnswerEvent } from './answer-events.js';
import type { AnswerListener } from './answer-listener.js';
import { type FallbackReason, UpstreamUnavailableError } from './assistant.errors.js';
import { CallerConcurrency } from '../rate-limit/caller-concurrency.js';
import { type Asked, askTargets, failoverEntry, type FailoverOptions } from './failover.js';
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

/**
 * Answers a question through one chain (the contract's order of answers): fresh cache → the model targets in order
 * → stale cache → excerpts → unavailable (503). `answer` and `stream` are the same chain; the transports only format
 * what it gives.
 */
@Injectable()
export class AssistantService {
  private readonly failover: FailoverOptions;
  private readonly listeners = new Set<AnswerListener>();

  constructor(
    private readonly cache: AnswerCache,
    private readonly knowledge: KnowledgeBase,
    private readonly targets: ModelTargets,
    private readonly callers: CallerConcurrency,
    @Inject(assistantConfig.KEY) config: ConfigType<typeof assistantConfig>,
  ) {
    this.failover = { deadlineMs: config.deadlineMs, hedgeAfterMs: config.hedgeAfterMs };
  }

  /** Tells `listener` of every answer, 503 and streamed answer's end, until the returned function is called. */
  observe(listener: AnswerListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * `signal`: aborted when the caller went away; the model call is then aborted too (and does not count). `caller`:
   * who asks (RATE_LIMIT_CONCURRENT counts its model calls in flight).
   */
  async answer(query: AssistantQuery, signal?: AbortSignal, caller?: string): Promise<AssistantAnswer> {
    for await (const event of this.chain(query, signal, false, caller)) if (event.type === 'done') return event.answer;
    throw new Error('The answer chain ended without an answer');
  }

  /**
   * The same answer, streamed (the contract's Streaming section): `excerpts`, then the model's `token`s as they come,
   * then `done` with the body `answer` would give. A fresh cached answer comes as one token. Every target failing
   * before its first token: the fallbacks, as `done`. After tokens were sent: `done` with the partial answer,
   * degraded, `interrupted` (never cached). Nothing to fall back on: UpstreamUnavailableError before any event, which
   * is why the excerpts event waits for the first token when there is no fallback to send instead.
   */
  stream(query: AssistantQuery, signal?: AbortSignal, caller?: string): AsyncGenerator<AnswerEvent, void, undefined> {
    return this.observedStream(this.chain(query, signal, true, caller));
  }

  /** The chain; `streamed` decides only whether the excerpts and tokens are yielded as they come. */
  private async *chain(
    { query, topK = DEFAULT_TOP_K }: AssistantQuery,
    signal: AbortSignal | undefined,
    streamed: boolean,
    caller?: string,
  ) {
    const key = this.cacheKey(query, topK);
    const cached = await this.cache.lookup(key);
    if (cached && this.cache.isFresh(cached)) {
      if (streamed) {
        yield { type: 'excerpts', excerpts: cached.excerpts } satisfies AnswerEvent;
        yield { type: 'token', text: cached.answer, ...(cached.model !== undefined ? { model: cached.model } : {}) } satisfies AnswerEvent;
      }
      yield this.done(this.fromCache(cached));
      return;
    }

    const excerpts = this.knowledge.search(query, topK);
    const hasFallback = cached !== undefined || excerpts.length > 0;
    if (streamed && hasFallback) yield { type: 'excerpts', excerpts } satisfies AnswerEvent;
    // The caller's place among its model calls in flight, held until the answer is done (a stream: until it ends).
    const release = this.callers.tryAcquire(caller);
    try {
      const asked: Asked = release
        ? await askTargets(this.targets.list, buildPrompt(query, excerpts), signal, streamed, this.failover)
        : { answered: false, passed: [] };
      yield* this.fromTargets(asked, { key, cached, excerpts, hasFallback, signal });
    } finally {
      release?.();
    }
  }

  /** The rest of the chain, once the targets were asked: their answer (streamed as it comes), or the fallbacks. */
  private async *fromTargets(
    asked: Asked,
    {
      key,
      cached,
      excerpts,
      hasFallback,
      signal,
    }: { key: string; cached?: CachedAnswer; excerpts: Excerpt[]; hasFallback: boolean; signal?: AbortSignal },
  ): AsyncGenerator<AnswerEvent, void, undefined> {
    const failover = asked.passed.length > 0 ? { failover: asked.passed.map(failoverEntry) } : {};
    if (!asked.answered) {
      // No target asked: this caller has RATE_LIMIT_CONCURRENT model calls in flight already.
      const outage = asked.passed.length > 0 ? this.outageOf(asked.passed) : CALLER_OVERLOADED;
      if (cached) yield this.done(this.fromStaleCache(cached, outage));
      else if (excerpts.length > 0) yield this.done(this.fromExcerpts(excerpts, outage));
      else throw this.unavailable(outage);
      return;
    }
    const { model } = asked;
    if ('text' in asked) {
      await this.cache.store(key, { answer: asked.text, excerpts, model });
      yield this.done(this.respond({ answer: asked.text, source: 'llm', excerpts, model, ...failover }));
      return;
    }

    const pieces = asked.pieces;
    let text = '';
    try {
      if (!hasFallback) yield { type: 'excerpts', excerpts } satisfies AnswerEvent;
      for (;;) {
        let read: IteratorResult<string>;
        try {
          read = await pieces.next();
        } catch (error) {
          if (signal?.aborted) return;
          const outage: Outage = {
            reason: 'interrupted',
            retryAfterSeconds: error instanceof TargetPassedError ? error.retryAfterSeconds : 1,
          };
          yield this.done(this.respond({ answer: text, source: 'llm', excerpts, model, ...failover }, outage));
          return;
        }
        if (read.done) break;
        text += read.value;
        yield { type: 'token', text: read.value, model } satisfies AnswerEvent;
      }
    } finally {
      // Ended early (the client left, or an error above): the model's stream is ended and aborted.
      await pieces.return?.();
    }
    await this.cache.store(key, { answer: text.trim(), excerpts, model });
    yield this.done(this.respond({ answer: text.trim(), source: 'llm', excerpts, model, ...failover }));
  }

  /** Tells the listeners how a streamed answer went: its first token, and how it ended. */
  private async *observedStream(events: AsyncGenerator<AnswerEvent, void, undefined>): AsyncGenerator<AnswerEvent, void, undefined> {
    const startedAt = performance.now();
    let firstTokenSeconds: number | undefined;
    let outcome: 'completed' | 'interrupted' | 'abandoned' = 'abandoned';
    try {
      for await (const event of events) {
        if (event.type === 'token' && firstTokenSeconds === undefined) firstTokenSeconds = (performance.now() - startedAt) / 1000;
        if (event.type === 'done') {
          outcome = event.answer.fallbackReason === 'interrupted' ? 'interrupted' : 'completed';
          const { source } = event.answer;
          // Which source the first token came from is known at done: the model's, or a cached answer's (sent at once).
          if (firstTokenSeconds !== undefined && source !== 'excerpts')
            this.tell((listener) => listener.firstToken(source, firstTokenSeconds!));
        }
        yield event;
      }
    } finally {
      this.tell((listener) => listener.streamEnded(outcome));
    }
  }

  private done(answer: AssistantAnswer): AnswerEvent {
    this.tell((listener) => listener.answered(answer));
    return { type: 'done', answer };
  }

  private unavailable(outage: Outage): UpstreamUnavailableError {
    this.tell((listener) => listener.unavailable(outage.reason));
    return new UpstreamUnavailableError(outage.reason, outage.retryAfterSeconds, this.targets.first.circuit);
  }

  private tell(notify: (listener: AnswerListener) => void): void {
    for (const listener of this.listeners) notify(listener);
  }

  private cacheKey(query: string, topK: number): string {
    return this.cache.keyFor({
      query,
      topK,
      ...this.targets.generationParameters,
      corpusVersion: this.knowledge.version,
      promptVersion: PROMPT_VERSION,
    });
  }

  private fromCache(cached: CachedAnswer): AssistantAnswer {
    return this.respond({ ...cachedBody(cached) });
  }

  private fromStaleCache(cached: CachedAnswer, outage: Outage): AssistantAnswer {
    this.targets.first.breaker.recordFallback();
    return this.respond(cachedBody(cached), outage);
  }

  private fromExcerpts(excerpts: Excerpt[], outage: Outage): AssistantAnswer {
    this.targets.first.breaker.recordFallback();
    return this.respond({ answer: answerFromExcerpts(excerpts), source: 'excerpts', excerpts }, outage);
  }

  private respond(
    body: Pick<AssistantAnswer, 'answer' | 'source' | 'excerpts' | 'cachedAt' | 'model' | 'failover'>,
    outage?: Outage,
  ): AssistantAnswer {
    return {
      answer: body.answer,
      source: body.source,
      degraded: outage !== undefined,
      fallbackReason: outage?.reason ?? null,
      excerpts: body.excerpts,
      circuit: this.targets.first.circuit,
      ...(body.model !== undefined ? { model: body.model } : {}),
      ...(body.failover !== undefined ? { failover: body.failover } : {}),
      ...(body.cachedAt !== undefined ? { cachedAt: body.cachedAt } : {}),
      ...(outage ? { retryAfterSeconds: outage.retryAfterSeconds } : {}),
    };
  }

  /**
   * Every target passed: the first target's reason (a request-specific rejection is an upstream error to the
   * caller), and the soonest any target may be tried again.
   */
  private outageOf(passed: readonly TargetPassedError[]): Outage {
    const first = passed[0];
    const reason: FallbackReason = first.reason === 'rejected' ? 'upstream_error' : first.reason;
    return { reason, retryAfterSeconds: Math.min(...passed.map((target) => target.retryAfterSeconds)) };
  }
}

/** A caller over RATE_LIMIT_CONCURRENT: a place frees the moment one of its calls ends. */
const CALLER_OVERLOADED: Outage = { reason: 'overloaded', retryAfterSeconds: 1 };

function cachedBody(cached: CachedAnswer): Pick<AssistantAnswer, 'answer' | 'source' | 'excerpts' | 'cachedAt' | 'model'> {
  return {
    answer: cached.answer,
    source: 'cache',
    excerpts: cached.excerpts,
    cachedAt: new Date(cached.createdAt).toISOString(),
    ...(cached.model !== undefined ? { model: cached.model } : {}),
  };
}
