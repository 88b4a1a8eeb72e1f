import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AnswerSource, AssistantAnswerDto } from '../assistant/assistant-answer.dto.js';
import type { FallbackReason } from '../assistant/assistant.errors.js';
import type { AnswerListener, CoalescingScope, StreamOutcome } from '../assistant/answer-listener.js';
import { AssistantService } from '../assistant/assistant.service.js';
import { METRICS_REGISTRY } from './metrics.constants.js';

/**
 * Answers by source, fallback reason and the target that wrote them: `assistant_answers_total`; streamed answers'
 * first token and outcome. It listens to AssistantService, which knows nothing of metrics.
 */
@Injectable()
export class AnswerMetrics implements AnswerListener, OnModuleInit, OnApplicationShutdown {
  private readonly answers: Counter<'source' | 'fallback_reason' | 'model'>;
  private readonly firstTokens: Histogram<'source'>;
  private readonly streams: Counter<'outcome'>;
  private readonly coalescedRequests: Counter<'scope'>;
  private readonly coalesceWaitTimeouts: Counter;
  private stopObserving?: () => void;

  constructor(
    @Inject(METRICS_REGISTRY) registry: Registry,
    private readonly assistant: AssistantService,
  ) {
    this.answers = new Counter({
      name: 'assistant_answers_total',
      help: 'Answers to POST /assistant/query and POST /v1/chat/completions (streamed ones at their end) by source (llm, cache, excerpts, unavailable = 503), fallback reason (none when a model or a fresh cache answered) and model (the target that wrote the answer; none when no target did)',
      labelNames: ['source', 'fallback_reason', 'model'],
      registers: [registry],
    });
    this.firstTokens = new Histogram({
      name: 'assistant_stream_first_token_seconds',
      help: 'Streamed answers: time from the request to the first token event sent, by source (llm = the model, cache = a cached answer)',
      labelNames: ['source'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers: [registry],
    });
    this.streams = new Counter({
      name: 'assistant_streams_total',
      help: 'Streamed answers by how they ended: completed (done), interrupted (done with a partial answer), abandoned (no done: the client left)',
      labelNames: ['outcome'],
      registers: [registry],
    });
    this.coalescedRequests = new Counter({
      name: 'assistant_coalesced_requests_total',
      help: "Answers that came from another request's model call for the same question (ASSISTANT_COALESCE), by scope: replica (a call in flight on this replica) or fleet (another replica's call, through Redis)",
      labelNames: ['scope'],
      registers: [registry],
    });
    const flightsInTheAir = (): number => this.assistant.flightsInTheAir;
    new Gauge({
      name: 'assistant_coalescing_flights',
      help: 'Questions whose model call is in flight on this replica now, each shared by every identical request (ASSISTANT_COALESCE)',
      registers: [registry],
      collect() {
        this.set(flightsInTheAir());
      },
    });
    this.coalesceWaitTimeouts = new Counter({
      name: 'assistant_coalesce_wait_timeouts_total',
      help: "Waits for another replica's answer to the same question that ran out (CACHE_COALESCE_WAIT_SECONDS, or the holder's lease expired), after which this replica asked the model itself",
      registers: [registry],
    });
  }

  onModuleInit(): void {
    this.stopObserving = this.assistant.observe(this);
  }

  onApplicationShutdown(): void {
    this.stopObserving?.();
  }

  answered({ source, fallbackReason, model }: AssistantAnswerDto): void {
    this.answers.inc({ source, fallback_reason: fallbackReason ?? 'none', model: model ?? 'none' });
  }

  unavailable(reason: FallbackReason): void {
    this.answers.inc({ source: 'unavailable', fallback_reason: reason, model: 'none' });
  }

  firstToken(source: Exclude<AnswerSource, 'excerpts'>, seconds: number): void {
    this.firstTokens.observe({ source }, seconds);
  }

  streamEnded(outcome: StreamOutcome): void {
    this.streams.inc({ outcome });
  }

  coalesced(scope: CoalescingScope): void {
    this.coalescedRequests.inc({ scope });
  }

  coalesceWaitTimedOut(): void {
    this.coalesceWaitTimeouts.inc();
  }
}
