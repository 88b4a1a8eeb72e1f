import { Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { ModelTargets } from './model-targets.js';

/** Whether every model target is configured at all; says nothing of whether it answers (that is its breaker's job). */
@Injectable()
export class HfTextGenHealthIndicator {
  constructor(
    private readonly targets: ModelTargets,
    private readonly health: HealthIndicatorService,
  ) {}

  isHealthy(key = 'upstream'): HealthIndicatorResult {
    const indicator = this.health.check(key);
    const { model } = this.targets.first;
    const unconfigured = this.targets.list.filter((target) => !target.configured).map((target) => target.model);
    const models = this.targets.list.length > 1 ? { models: this.targets.list.map((target) => target.model) } : {};
    if (unconfigured.length === 0) return indicator.up({ configured: true, model, ...models });
    return indicator.down({
      configured: false,
      model,
      ...models,
      ...(this.targets.list.length > 1 ? { unconfigured } : {}),
      message: 'Neither HF_TOKEN nor HF_ENDPOINT_URL is set',
    });
  }
}
