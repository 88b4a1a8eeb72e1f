import { Body, Controller, Headers, HttpCode, HttpStatus, Post, UseInterceptors } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { AssistantAnswerDto } from './assistant-answer.dto.js';
import { ApiAnswerResponses } from './assistant.openapi.js';
import { AnswerEventStream } from './answer-events.js';
import { AssistantService } from './assistant.service.js';
import { ServerSentEventsInterceptor, wantsEventStream } from './server-sent-events.interceptor.js';
import { ClientSignal } from './client-signal.decorator.js';
import { MaxQueryLengthPipe } from './max-query-length.pipe.js';
import { QueryDto } from './query.dto.js';
import { Caller } from '../rate-limit/caller-concurrency.js';

@ApiTags('assistant')
@Controller('assistant')
export class AssistantController {
  constructor(private readonly assistant: AssistantService) {}

  @Post('query')
  @HttpCode(HttpStatus.OK)
  @UseInterceptors(ServerSentEventsInterceptor)
  @ApiAnswerResponses()
  query(
    @Body(MaxQueryLengthPipe) body: QueryDto,
    @ClientSignal() clientGone: AbortSignal,
    @Caller() caller: string,
    @Headers('accept') accept?: string,
  ): Promise<AssistantAnswerDto | AnswerEventStream> {
    if (wantsEventStream(accept)) return AnswerEventStream.open(this.assistant.stream(body, clientGone, caller));
    return this.assistant.answer(body, clientGone, caller);
  }
}
