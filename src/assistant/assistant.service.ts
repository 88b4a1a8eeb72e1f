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
import { underLease } from '../coalescing/fleet-coalescing.js';
import { FleetLeases, type FleetOutcome } from '../coalescing/fleet-leases.js';
import { SingleFlight } from '../coalescing/single-flight.js';
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

/** What the chain knows of a question once the fresh cache missed. */
interface Question {
  query: string;
  key: string;
  cached?: CachedAnswer;
  excerpts: Excerpt[];
  hasFallback: boolean;
}

/** Who a request is in its question's flight: the one whose call it is, or one waiting for that call. */
type Role = 'leader' | 'follower';

/** A lease outlives the request's deadline by this much, so a replica that dies mid-call frees it soon. */
const LEASE_MARGIN_MS = 1000;

/**
 * Answers a question through one chain (the contract's order of answers): fresh cache → the model targets in order
 * → stale cache → excerpts → unavailable (503). `answer` and `stream` are the same chain; the transports only format
 * what it gives.
 */
@Injectable()
export class AssistantService {
  private readonly failover: FailoverOptions;
  private readonly listeners = new Set<AnswerListener>();
  /** ASSISTANT_COALESCE: identical questions in flight share one model call. */
  private readonly coalesce: boolean;
  private readonly flights = new SingleFlight<AnswerEvent>();
  private readonly leaseMs: number;

  constructor(
    private readonly cache: AnswerCache,
    private readonly knowledge: KnowledgeBase,
    private readonly targets: ModelTargets,
    private readonly callers: CallerConcurrency,
    private readonly fleet: FleetLeases,
    @Inject(assistantConfig.KEY) config: ConfigType<typeof assistantConfig>,
  ) {
    this.failover = { deadlineMs: config.deadlineMs, hedgeAfterMs: config.hedgeAfterMs };
    this.coalesce = config.coalesce;
    this.leaseMs = config.deadlineMs + LEASE_MARGIN_MS;
  }

  /** Questions whose model call is in flight on this replica now (each shared by every identical request). */
  get flightsInTheAir(): number {
    return this.flights.size;
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
  ): AsyncGenerator<AnswerEvent, void, undefined> {
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
    const question: Question = { query, key, cached, excerpts, hasFallback: cached !== undefined || excerpts.length > 0 };
    // Joining the flight in the air, or starting one, happens within one turn: two identical questions never both lead.
    const seat = this.coalesce ? this.flights.join(key, signal) : undefined;
    if (seat) {
      // A follower makes no model call, so it holds no place among its caller's (RATE_LIMIT_CONCURRENT).
      yield* this.delivered(seat, question, streamed, 'follower');
      return;
    }
    // The caller's place among its model calls in flight, held until the call is done (a stream: until it ends).
    const release = this.callers.tryAcquire(caller);
    if (!release) {
      yield* this.delivered(this.overloaded(question), question, streamed, 'leader');
      return;
    }
    if (this.coalesce) {
      const ask = (flightSignal: AbortSignal) => this.fromFleetOrModel(question, flightSignal, streamed);
      yield* this.delivered(this.flights.start(key, ask, { signal, afterwards: release }), question, streamed, 'leader');
      return;
    }
    try {
      yield* this.delivered(this.fromModel(question, signal, streamed), question, streamed, 'leader');
    } finally {
      release();
    }
  }

  /**
   * One request's view of its question's answer: its own excerpts event (at once when there is a fallback, else just
   * before the first token, so that a 503 can still come before any event), the call's tokens when it streams, and
   * the done event, told to the listeners for this request. A follower's answer from the model is `coalesced`.
   */
  private async *delivered(
    events: (AsyncIterable<AnswerEvent> | Iterable<AnswerEvent>) & { leave?: () => void },
    question: Question,
    streamed: boolean,
    role: Role,
  ): AsyncGenerator<AnswerEvent, void, undefined> {
    let excerptsSent = false;
    let tokens = 0;
    const excerptsOnce = (): AnswerEvent[] => {
      if (!streamed || excerptsSent) return [];
      excerptsSent = true;
      return [{ type: 'excerpts', excerpts: question.excerpts }];
    };
    try {
      if (question.hasFallback) yield* excerptsOnce();
      for await (const event of events) {
        if (event.type === 'excerpts') continue;
        if (event.type === 'token') {
          if (!streamed) continue;
          yield* excerptsOnce();
          tokens++;
          yield event;
          continue;
        }
        const { answer } = event;
        // A JSON follower of a streamed call that broke off: a partial answer is no JSON answer, the fallbacks are.
        if (!streamed && answer.fallbackReason === 'interrupted') {
          yield this.done(this.fallback(question, { reason: 'upstream_error', retryAfterSeconds: answer.retryAfterSeconds ?? 1 }));
          return;
        }
        yield* excerptsOnce();
        // A streamed follower of a JSON call (or an answer another replica cached): the whole text as one token.
        if (streamed && tokens === 0 && answer.source === 'llm' && !answer.degraded && answer.answer !== '')
          yield {
            type: 'token',
            text: answer.answer,
            ...(answer.model !== undefined ? { model: answer.model } : {}),
          } satisfies AnswerEvent;
        yield this.done(this.asSeenBy(role, answer));
      }
    } catch (error) {
      if (error instanceof UpstreamUnavailableError) this.tell((listener) => listener.unavailable(error.reason));
      throw error;
    } finally {
      // Gone before reading its seat's events (the client left at the excerpts): the flight must not wait for it.
      events.leave?.();
    }
  }

  /** A follower's answer from the model is marked coalesced; a leader's is when it came from another replica's call. */
  private asSeenBy(role: Role, answer: AssistantAnswer): AssistantAnswer {
    if (answer.source !== 'llm') return answer;
    if (role === 'follower') {
      this.tell((listener) => listener.coalesced('replica'));
      return { ...answer, coalesced: true };
    }
    if (answer.coalesced) this.tell((listener) => listener.coalesced('fleet'));
    return answer;
  }

  /** With REDIS_URL, the question's lease in the fleet first (coalescing/fleet-coalescing.ts); else the model. */
  private fromFleetOrModel(question: Question, signal: AbortSignal, streamed: boolean): AsyncGenerator<AnswerEvent, void, undefined> {
    if (!this.fleet.enabled) return this.fromModel(question, signal, streamed);
    return underLease<AnswerEvent, CachedAnswer>(
      this.fleet,
      question.key,
      this.leaseMs,
      {
        ask: () => this.fromModel(question, signal, streamed),
        read: () => this.freshEntry(question.key),
        answered: (entry) => ({ type: 'done', answer: { ...this.fromFleet(entry), coalesced: true } }),
        failed: (outcome) => ({ type: 'done', answer: this.fallback(question, outcome) }),
        outcomeOf: (event) => (event.type === 'done' ? fleetOutcomeOf(event.answer) : undefined),
        outcomeOfError: (error) =>
          error instanceof UpstreamUnavailableError
            ? { kind: 'failed', reason: error.reason, retryAfterSeconds: error.retryAfterSeconds }
            : undefined,
        timedOut: () => this.tell((listener) => listener.coalesceWaitTimedOut()),
      },
      signal,
    );
  }

  /** The model targets, then what they came to: their answer (streamed as it comes, and cached), or the fallbacks. */
  private async *fromModel(
    question: Question,
    signal: AbortSignal | undefined,
    streamed: boolean,
  ): AsyncGenerator<AnswerEvent, void, undefined> {
    const asked = await askTargets(this.targets.list, buildPrompt(question.query, question.excerpts), signal, streamed, this.failover);
    yield* this.fromTargets(asked, question, signal);
  }

  /** No target asked: this caller has RATE_LIMIT_CONCURRENT model calls in flight already. */
  private *overloaded(question: Question): Generator<AnswerEvent, void, undefined> {
    yield { type: 'done', answer: this.fallback(question, CALLER_OVERLOADED) };
  }

  /** The rest of the chain, once the targets were asked: their answer (streamed as it comes), or the fallbacks. */
  private async *fromTargets(
    asked: Asked,
    question: Question,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<AnswerEvent, void, undefined> {
    const { key, excerpts } = question;
    const failover = asked.passed.length > 0 ? { failover: asked.passed.map(failoverEntry) } : {};
    if (!asked.answered) {
      yield { type: 'done', answer: this.fallback(question, this.outageOf(asked.passed)) };
      return;
    }
    const { model } = asked;
    if ('text' in asked) {
      await this.cache.store(key, { answer: asked.text, excerpts, model });
      yield { type: 'done', answer: this.respond({ answer: asked.text, source: 'llm', excerpts, model, ...failover }) };
      return;
    }

    const pieces = asked.pieces;
    let text = '';
    try {
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
          yield { type: 'done', answer: this.respond({ answer: text, source: 'llm', excerpts, model, ...failover }, outage) };
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
    yield { type: 'done', answer: this.respond({ answer: text.trim(), source: 'llm', excerpts, model, ...failover }) };
  }

  /** The model did not answer: a stale cached answer, else the excerpts, else UpstreamUnavailableError (the 503). */
  private fallback({ cached, excerpts }: Question, outage: Outage): AssistantAnswer {
    if (cached) return this.respond(cachedBody(cached), outage);
    if (excerpts.length > 0) return this.respond({ answer: answerFromExcerpts(excerpts), source: 'excerpts', excerpts }, outage);
    throw new UpstreamUnavailableError(outage.reason, outage.retryAfterSeconds, this.targets.first.circuit);
  }

  /** A fresh entry for `key` (another replica's answer reaching the cache), or undefined. */
  private async freshEntry(key: string): Promise<CachedAnswer | undefined> {
    const entry = await this.cache.lookup(key);
    return entry && this.cache.isFresh(entry) ? entry : undefined;
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

  /** One request's answer: told to the listeners, and a fallback's counted on the first target's breaker. */
  private done(answer: AssistantAnswer): AnswerEvent {
    if (answer.degraded && answer.source !== 'llm') this.targets.first.breaker.recordFallback();
    this.tell((listener) => listener.answered(answer));
    return { type: 'done', answer };
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

  /** Another replica's answer to the same question, as it reached the cache: the model's answer, not a cached one. */
  private fromFleet(entry: CachedAnswer): AssistantAnswer {
    return this.respond({
      answer: entry.answer,
      source: 'llm',
      excerpts: entry.excerpts,
      ...(entry.model !== undefined ? { model: entry.model } : {}),
    });
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

/** What a lease holder's call came to, for the replicas waiting on it: an answer only when it was cached. */
function fleetOutcomeOf(answer: AssistantAnswer): FleetOutcome {
  if (!answer.degraded) return { kind: 'answered' };
  const reason = answer.fallbackReason === 'interrupted' || answer.fallbackReason === null ? 'upstream_error' : answer.fallbackReason;
  return { kind: 'failed', reason, retryAfterSeconds: answer.retryAfterSeconds ?? 1 };
}

function cachedBody(cached: CachedAnswer): Pick<AssistantAnswer, 'answer' | 'source' | 'excerpts' | 'cachedAt' | 'model'> {
  return {
    answer: cached.answer,
    source: 'cache',
    excerpts: cached.excerpts,
    cachedAt: new Date(cached.createdAt).toISOString(),
    ...(cached.model !== undefined ? { model: cached.model } : {}),
  };
}
