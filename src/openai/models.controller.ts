import { Controller, Get, UseFilters } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { SkipThrottle } from '@nestjs/throttler';
import { ModelTargets } from '../hf-textgen/model-targets.js';
import { OpenAiExceptionFilter } from './openai-exception.filter.js';
import type { ModelListDto } from './openai.dto.js';
import { ApiModelListResponses } from './openai.openapi.js';

/** Lists every model target, in the order they are tried; rate limits count answers, and clients list models often. */
@ApiTags('openai')
@Controller('v1/models')
@UseFilters(OpenAiExceptionFilter)
@SkipThrottle()
export class ModelsController {
  private readonly models: ModelListDto;

  constructor(targets: ModelTargets) {
    const created = Math.floor(Date.now() / 1000);
    const ids = [...new Set(targets.list.map((target) => target.model))];
    this.models = { object: 'list', data: ids.map((id) => ({ id, object: 'model', created, owned_by: ownerOf(id) })) };
  }

  @Get()
  @ApiModelListResponses()
  list(): ModelListDto {
    return this.models;
  }
}

/** The Hub organisation of `org/name`; a bare name is HuggingFace's. */
function ownerOf(model: string): string {
  const slash = model.indexOf('/');
  return slash > 0 ? model.slice(0, slash) : 'huggingface';
}
