import { Inject, Injectable } from '@nestjs/common';
import { Counter, Registry } from 'prom-client';
import type { AnswerSource } from '../assistant/assistant-answer.dto.js';
import type { FallbackReason } from '../assistant/assistant.errors.js';
import { METRICS_REGISTRY } from './metrics.constants.js';

/** Answers by source and fallback reason: `assistant_answers_total`. */
@Injectable()
export class AnswerMetrics {
  private readonly answers: Counter<'source' | 'fallback_reason'>;

  constructor(@Inject(METRICS_REGISTRY) registry: Registry) {
    this.answers = new Counter({
      name: 'assistant_answers_total',
      help: 'Answers to POST /assistant/query by source (llm, cache, excerpts, unavailable = 503) and fallback reason (none when the model or a fresh cache answered)',
      labelNames: ['source', 'fallback_reason'],
      registers: [registry],
    });
  }

  /** `unavailable` is the 503: nothing was left to answer from. */
  count(source: AnswerSource | 'unavailable', fallbackReason: FallbackReason | null): void {
    this.answers.inc({ source, fallback_reason: fallbackReason ?? 'none' });
  }
}
