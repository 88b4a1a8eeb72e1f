import { Body, Controller, HttpCode, HttpStatus, Post } from '@nestjs/common';
import { type AssistantAnswer, AssistantService } from './assistant.service.js';
import { MaxQueryLengthPipe } from './max-query-length.pipe.js';
import { QueryDto } from './query.dto.js';

@Controller('assistant')
export class AssistantController {
  constructor(private readonly assistant: AssistantService) {}

  @Post('query')
  @HttpCode(HttpStatus.OK)
  query(@Body(MaxQueryLengthPipe) body: QueryDto): Promise<AssistantAnswer> {
    return this.assistant.answer(body);
  }
}
