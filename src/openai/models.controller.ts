import { Controller, Get, Inject, UseFilters } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { ApiTags } from '@nestjs/swagger';
import { SkipThrottle } from '@nestjs/throttler';
import { hfTextGenConfig } from '../config/hf-textgen.config.js';
import { OpenAiExceptionFilter } from './openai-exception.filter.js';
import type { ModelListDto } from './openai.dto.js';
import { ApiModelListResponses } from './openai.openapi.js';

/** Lists the one model that answers; rate limits count answers, and clients list models often. */
@ApiTags('openai')
@Controller('v1/models')
@UseFilters(OpenAiExceptionFilter)
@SkipThrottle()
export class ModelsController {
  private readonly models: ModelListDto;

  constructor(@Inject(hfTextGenConfig.KEY) config: ConfigType<typeof hfTextGenConfig>) {
    const slash = config.model.indexOf('/');
    const ownedBy = slash > 0 ? config.model.slice(0, slash) : 'huggingface';
    this.models = {
      object: 'list',
      data: [{ id: config.model, object: 'model', created: Math.floor(Date.now() / 1000), owned_by: ownedBy }],
    };
  }

  @Get()
  @ApiModelListResponses()
  list(): ModelListDto {
    return this.models;
  }
}
