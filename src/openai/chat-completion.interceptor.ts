import type { Readable } from 'node:stream';
import { type CallHandler, type ExecutionContext, Injectable, type NestInterceptor } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { map, type Observable } from 'rxjs';
import { AnswerEventStream } from '../assistant/answer-events.js';
import type { AssistantAnswerDto } from '../assistant/assistant-answer.dto.js';
import { eventStreamBody } from '../assistant/server-sent-events.js';
import { ModelTargets } from '../hf-textgen/model-targets.js';
import { chatCompletion, chatCompletionChunks } from './chat-completion.formatter.js';
import type { ChatCompletionDto } from './openai.dto.js';

export const ASSISTANT_SOURCE_HEADER = 'x-assistant-source';
export const ASSISTANT_DEGRADED_HEADER = 'x-assistant-degraded';

/**
 * Sends the route's answer in OpenAI's shape: an answer as a `chat.completion` (its source and degradation also in
 * headers), an AnswerEventStream as `chat.completion.chunk` events through the app's event-stream writer.
 */
@Injectable()
export class ChatCompletionInterceptor implements NestInterceptor<AssistantAnswerDto | AnswerEventStream, ChatCompletionDto | Readable> {
  constructor(private readonly targets: ModelTargets) {}

  intercept(
    context: ExecutionContext,
    next: CallHandler<AssistantAnswerDto | AnswerEventStream>,
  ): Observable<ChatCompletionDto | Readable> {
    const reply = context.switchToHttp().getResponse<FastifyReply>();
    return next.handle().pipe(
      map((result) => {
        if (result instanceof AnswerEventStream) return eventStreamBody(reply, result, chatCompletionChunks(this.targets.first.model));
        void reply.header(ASSISTANT_SOURCE_HEADER, result.source).header(ASSISTANT_DEGRADED_HEADER, String(result.degraded));
        return chatCompletion(result, this.targets.first.model);
      }),
    );
  }
}
