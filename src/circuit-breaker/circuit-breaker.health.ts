import { Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { CircuitBreakerRegistry } from './circuit-breaker.registry.js';

/** Up while a breaker is closed or half-open, down while it is open; the entry carries its snapshot. */
@Injectable()
export class CircuitBreakerHealthIndicator {
  constructor(
    private readonly registry: CircuitBreakerRegistry,
    private readonly health: HealthIndicatorService,
  ) {}

  /** One Terminus check per registered breaker, keyed by its name. */
  checks(): Array<() => HealthIndicatorResult> {
    return this.registry.getAll().map((breaker) => () => this.isHealthy(breaker.name));
  }

  isHealthy(name: string): HealthIndicatorResult {
    const indicator = this.health.check(name);
    const { name: _name, ...details } = this.registry.get(name).snapshot();
    return details.state === 'open' ? indicator.down(details) : indicator.up(details);
  }
}
