import { Controller, Get } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, type HealthCheckResult } from '@nestjs/terminus';
import { CacheStoreHealthIndicator } from '../cache/cache-store.health.js';
import { CircuitBreakerHealthIndicator } from '../circuit-breaker/circuit-breaker.health.js';
import { HfTextGenHealthIndicator } from '../hf-textgen/hf-textgen.health.js';
import { ApplicationReadiness } from './application-readiness.js';
import { ApiHealthResponses, HEALTH_EXAMPLES } from './health.openapi.js';
import { PublicRoute } from '../access/public-route.decorator.js';

/** Terminus would document each route itself, every one with a 503 (see ApiHealthResponses). */
const HEALTH_CHECK = { noCache: true, swaggerDocumentation: false };

@PublicRoute()
@ApiTags('health')
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
  @HealthCheck(HEALTH_CHECK)
  @ApiHealthResponses({
    summary: 'Everything known: breakers, cache store, upstream configured',
    up: HEALTH_EXAMPLES.everythingUp,
    down: { when: 'a breaker is open, the cache store is down, or no model is configured', details: HEALTH_EXAMPLES.somethingDown },
  })
  check(): Promise<HealthCheckResult> {
    return this.health.check([...this.breakers.checks(), () => this.cacheStore.isHealthy(), () => this.upstream.isHealthy()]);
  }

  /** Liveness: the process answers. Depends on nothing, so an outage never restarts pods. */
  @Get('live')
  @HealthCheck(HEALTH_CHECK)
  @ApiHealthResponses({ summary: 'Liveness probe: the process answers; checks no dependency', up: {} })
  live(): Promise<HealthCheckResult> {
    return this.health.check([]);
  }

  /** Readiness: up with the circuit open or Redis down (the fallbacks serve); down while starting or draining. */
  @Get('ready')
  @HealthCheck(HEALTH_CHECK)
  @ApiHealthResponses({
    summary: 'Readiness probe: up with the circuit open or Redis down, since the fallbacks serve',
    up: HEALTH_EXAMPLES.ready,
    down: { when: 'starting up, or draining after SIGTERM', details: HEALTH_EXAMPLES.draining },
  })
  ready(): Promise<HealthCheckResult> {
    return this.health.check([() => this.readiness.isHealthy()]);
  }

  /** For dashboards and alerts, never a probe: it fails on every replica at once while the circuit is open. */
  @Get('circuit-breaker')
  @HealthCheck(HEALTH_CHECK)
  @ApiHealthResponses({
    summary: 'Breaker states for dashboards and alerts; never a probe',
    up: HEALTH_EXAMPLES.breakerClosed,
    down: { when: 'a breaker is open', details: HEALTH_EXAMPLES.breakerOpen },
  })
  circuitBreaker(): Promise<HealthCheckResult> {
    return this.health.check(this.breakers.checks());
  }
}
