import { type CallHandler, type ExecutionContext, Injectable, type NestInterceptor } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { map, type Observable } from 'rxjs';
import { AnswerEventStream } from './answer-events.js';
import { eventStreamBody } from './server-sent-events.js';

/** Whether a request asked for a stream (`Accept: text/event-stream`). */
export function wantsEventStream(accept: string | undefined): boolean {
  return accept !== undefined && /(^|,)\s*text\/event-stream\s*(;|,|$)/i.test(accept);
}

/**
 * Sends a route's AnswerEventStream as text/event-stream, through a Readable Fastify pipes to the socket: the socket's
 * backpressure reaches back to the model's stream. Anything else the route returns goes on unchanged.
 */
@Injectable()
export class ServerSentEventsInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(
      map((result: unknown) => {
        if (!(result instanceof AnswerEventStream)) return result;
        return eventStreamBody(context.switchToHttp().getResponse<FastifyReply>(), result);
      }),
    );
  }
}
