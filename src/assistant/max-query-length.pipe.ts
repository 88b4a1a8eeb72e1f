import { BadRequestException, Inject, Injectable, PipeTransform } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { assistantConfig } from '../config/assistant.config.js';
import type { QueryDto } from './query.dto.js';

/** ASSISTANT_MAX_QUERY_LENGTH is configuration, so it cannot live in the DTO's static decorators. */
@Injectable()
export class MaxQueryLengthPipe implements PipeTransform<QueryDto, QueryDto> {
  constructor(@Inject(assistantConfig.KEY) private readonly config: ConfigType<typeof assistantConfig>) {}

  transform(body: QueryDto): QueryDto {
    if (body.query.length > this.config.maxQueryLength) {
      // Same shape as ValidationPipe's errors, so clients parse one kind of 400.
      throw new BadRequestException([`query must be shorter than or equal to ${this.config.maxQueryLength} characters`]);
    }
    return body;
  }
}
