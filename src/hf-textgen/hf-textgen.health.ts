import { Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { HfTextGenService } from './hf-textgen.service.js';

/** Whether a model is configured at all; says nothing of whether it answers (that is the breaker's job). */
@Injectable()
export class HfTextGenHealthIndicator {
  constructor(
    private readonly model: HfTextGenService,
    private readonly health: HealthIndicatorService,
  ) {}

  isHealthy(key = 'upstream'): HealthIndicatorResult {
    const indicator = this.health.check(key);
    const { model } = this.model.generationParameters;
    return this.model.configured
      ? indicator.up({ configured: true, model })
      : indicator.down({ configured: false, model, message: 'Neither HF_TOKEN nor HF_ENDPOINT_URL is set' });
  }
}
