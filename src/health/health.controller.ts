import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService, type HealthCheckResult } from '@nestjs/terminus';
import { CacheStoreHealthIndicator } from '../cache/cache-store.health.js';
import { CircuitBreakerHealthIndicator } from '../circuit-breaker/circuit-breaker.health.js';
import { HfTextGenHealthIndicator } from '../hf-textgen/hf-textgen.health.js';
import { ApplicationReadiness } from './application-readiness.js';

@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly readiness: ApplicationReadiness,
    private readonly breakers: CircuitBreakerHealthIndicator,
    private readonly cacheStore: CacheStoreHealthIndicator,
    private readonly upstream: HfTextGenHealthIndicator,
  ) {}

  /** Everything known: breakers, cache store, upstream configured. For people, not probes. */
  @Get()
  @HealthCheck()
  check(): Promise<HealthCheckResult> {
    return this.health.check([...this.breakers.checks(), () => this.cacheStore.isHealthy(), () => this.upstream.isHealthy()]);
  }

  /** Liveness: the process answers. Depends on nothing, so an outage never restarts pods. */
  @Get('live')
  @HealthCheck()
  live(): Promise<HealthCheckResult> {
    return this.health.check([]);
  }

  /** Readiness: up with the circuit open or Redis down (the fallbacks serve); down while starting or draining. */
  @Get('ready')
  @HealthCheck()
  ready(): Promise<HealthCheckResult> {
    return this.health.check([() => this.readiness.isHealthy()]);
  }

  /** For dashboards and alerts, never a probe: it fails on every replica at once while the circuit is open. */
  @Get('circuit-breaker')
  @HealthCheck()
  circuitBreaker(): Promise<HealthCheckResult> {
    return this.health.check(this.breakers.checks());
  }
}
