import { type CallHandler, type ExecutionContext, Injectable, type NestInterceptor } from '@nestjs/common';
import { type Observable, tap } from 'rxjs';
import { AnswerEventStream } from '../assistant/answer-events.js';
import type { AssistantAnswerDto } from '../assistant/assistant-answer.dto.js';
import { UpstreamUnavailableError } from '../assistant/assistant.errors.js';
import { AnswerMetrics, type StreamOutcome } from './answer.metrics.js';

type RouteResult = AssistantAnswerDto | AnswerEventStream;

/**
 * Counts each answer a route returns by its source and fallback reason, and each 503 as `unavailable`; the error goes
 * on unchanged. A streamed answer is counted by its done event, with its time to first token and how it ended.
 */
@Injectable()
export class AnswerMetricsInterceptor implements NestInterceptor<RouteResult, RouteResult> {
  constructor(private readonly metrics: AnswerMetrics) {}

  intercept(_context: ExecutionContext, next: CallHandler<RouteResult>): Observable<RouteResult> {
    const startedAt = performance.now();
    return next.handle().pipe(
      tap({
        next: (result) => {
          if (result instanceof AnswerEventStream) this.observeStream(result, startedAt);
          else this.metrics.count(result.source, result.fallbackReason);
        },
        error: (error: unknown) => {
          if (error instanceof UpstreamUnavailableError) this.metrics.count('unavailable', error.reason);
        },
      }),
    );
  }

  private observeStream(stream: AnswerEventStream, startedAt: number): void {
    let outcome: StreamOutcome = 'abandoned';
    let firstTokenSeconds: number | undefined;
    stream.observe((event) => {
      if (event === 'ended') return this.metrics.countStream(outcome);
      if (event.type === 'token' && firstTokenSeconds === undefined) firstTokenSeconds = (performance.now() - startedAt) / 1000;
      if (event.type !== 'done') return;
      const { source, fallbackReason } = event.answer;
      this.metrics.count(source, fallbackReason);
      outcome = fallbackReason === 'interrupted' ? 'interrupted' : 'completed';
      // Which source the first token came from is known at done: the model's, or a cached answer's (sent at once).
      if (firstTokenSeconds !== undefined && source !== 'excerpts') this.metrics.observeFirstToken(source, firstTokenSeconds);
    });
  }
}
