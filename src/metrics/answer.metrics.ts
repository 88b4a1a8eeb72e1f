import { Inject, Injectable } from '@nestjs/common';
import { Counter, Histogram, Registry } from 'prom-client';
import type { AnswerSource } from '../assistant/assistant-answer.dto.js';
import type { FallbackReason } from '../assistant/assistant.errors.js';
import { METRICS_REGISTRY } from './metrics.constants.js';

/** How a streamed answer ended: with done (completed or interrupted), or before it (the client left, or an error). */
export type StreamOutcome = 'completed' | 'interrupted' | 'abandoned';

/** Answers by source and fallback reason: `assistant_answers_total`; streamed answers' first token and outcome. */
@Injectable()
export class AnswerMetrics {
  private readonly answers: Counter<'source' | 'fallback_reason'>;
  private readonly firstToken: Histogram<'source'>;
  private readonly streams: Counter<'outcome'>;

  constructor(@Inject(METRICS_REGISTRY) registry: Registry) {
    this.answers = new Counter({
      name: 'assistant_answers_total',
      help: 'Answers to POST /assistant/query and POST /v1/chat/completions (streamed ones at their end) by source (llm, cache, excerpts, unavailable = 503) and fallback reason (none when the model or a fresh cache answered)',
      labelNames: ['source', 'fallback_reason'],
      registers: [registry],
    });
    this.firstToken = new Histogram({
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
  }

  /** `unavailable` is the 503: nothing was left to answer from. */
  count(source: AnswerSource | 'unavailable', fallbackReason: FallbackReason | null): void {
    this.answers.inc({ source, fallback_reason: fallbackReason ?? 'none' });
  }

  observeFirstToken(source: 'llm' | 'cache', seconds: number): void {
    this.firstToken.observe({ source }, seconds);
  }

  countStream(outcome: StreamOutcome): void {
    this.streams.inc({ outcome });
  }
}
