import { Body, Controller, HttpCode, HttpStatus, Post, UseFilters, UseInterceptors } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { AnswerEventStream } from '../assistant/answer-events.js';
import type { AssistantAnswerDto } from '../assistant/assistant-answer.dto.js';
import { AssistantService } from '../assistant/assistant.service.js';
import { ClientSignal } from '../assistant/client-signal.decorator.js';
import { Caller } from '../rate-limit/caller-concurrency.js';
import { type ChatCompletionQuery, ChatCompletionRequestPipe } from './chat-completion-request.pipe.js';
import { ChatCompletionInterceptor } from './chat-completion.interceptor.js';
import { OpenAiExceptionFilter } from './openai-exception.filter.js';
import { ApiChatCompletionResponses } from './openai.openapi.js';

@ApiTags('openai')
@Controller('v1/chat/completions')
@UseFilters(OpenAiExceptionFilter)
export class ChatCompletionsController {
  constructor(private readonly assistant: AssistantService) {}

  @Post()
  @HttpCode(HttpStatus.OK)
  @UseInterceptors(ChatCompletionInterceptor)
  @ApiChatCompletionResponses()
  create(
    // An interface, so the global ValidationPipe (which refuses unknown fields) leaves the body to the route's pipe.
    @Body(ChatCompletionRequestPipe) request: ChatCompletionQuery,
    @ClientSignal() clientGone: AbortSignal,
    @Caller() caller: string,
  ): Promise<AssistantAnswerDto | AnswerEventStream> {
    const query = { query: request.question };
    if (request.stream) return AnswerEventStream.open(this.assistant.stream(query, clientGone, caller));
    return this.assistant.answer(query, clientGone, caller);
  }
}
