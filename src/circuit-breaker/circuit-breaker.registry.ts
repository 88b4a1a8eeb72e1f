import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { circuitBreakerConfig } from '../config/circuit-breaker.config.js';
import { CircuitBreaker, type CircuitBreakerOptions } from './circuit-breaker.js';
import { DUPLICATE_BREAKER, NO_BREAKER } from './circuit-breaker.constants.js';

/** Named breakers, one per name, built from config; the configured one exists from the start. */
@Injectable()
export class CircuitBreakerRegistry implements OnApplicationShutdown {
  private readonly breakers = new Map<string, CircuitBreaker>();

  constructor(@Inject(circuitBreakerConfig.KEY) private readonly config: ConfigType<typeof circuitBreakerConfig>) {
    this.add(config.name);
  }

  /** The breaker guarding generation (`CIRCUIT_BREAKER_NAME`). */
  get defaultName(): string {
    return this.config.name;
  }

  add(name: string, overrides: Partial<CircuitBreakerOptions> = {}): CircuitBreaker {
    if (this.breakers.has(name)) throw new Error(DUPLICATE_BREAKER(name));
    const { enabled, failureThreshold, timeoutMs, resetTimeoutMs, maxOpenMs, resetBackoff, maxConcurrent, streamIdleTimeoutMs } =
      this.config;
    const options = { enabled, failureThreshold, timeoutMs, resetTimeoutMs, maxOpenMs, resetBackoff, maxConcurrent, streamIdleTimeoutMs };
    const breaker = new CircuitBreaker(name, { ...options, ...overrides });
    this.breakers.set(name, breaker);
    return breaker;
  }

  get(name: string): CircuitBreaker {
    const breaker = this.breakers.get(name);
    if (!breaker) throw new Error(NO_BREAKER(name));
    return breaker;
  }

  getAll(): CircuitBreaker[] {
    return [...this.breakers.values()];
  }

  onApplicationShutdown(): void {
    for (const breaker of this.breakers.values()) breaker.shutdown();
  }
}
