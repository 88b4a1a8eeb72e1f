import { type CallHandler, type ExecutionContext, Injectable, type NestInterceptor } from '@nestjs/common';
import { type Observable, tap } from 'rxjs';
import type { AssistantAnswerDto } from '../assistant/assistant-answer.dto.js';
import { UpstreamUnavailableError } from '../assistant/assistant.errors.js';
import { AnswerMetrics } from './answer.metrics.js';

/** Counts each answer a route returns by its source and fallback reason, and each 503 as `unavailable`; the error goes on unchanged. */
@Injectable()
export class AnswerMetricsInterceptor implements NestInterceptor<AssistantAnswerDto, AssistantAnswerDto> {
  constructor(private readonly metrics: AnswerMetrics) {}

  intercept(_context: ExecutionContext, next: CallHandler<AssistantAnswerDto>): Observable<AssistantAnswerDto> {
    return next.handle().pipe(
      tap({
        next: (answer) => this.metrics.count(answer.source, answer.fallbackReason),
        error: (error: unknown) => {
          if (error instanceof UpstreamUnavailableError) this.metrics.count('unavailable', error.reason);
        },
      }),
    );
  }
}
