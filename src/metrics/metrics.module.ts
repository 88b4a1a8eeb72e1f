import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { AccessModule } from '../access/access.module.js';
import { AssistantModule } from '../assistant/assistant.module.js';
import { AnswerCacheModule } from '../cache/answer-cache.module.js';
import { appConfig } from '../config/app.config.js';
import { CircuitBreakerModule } from '../circuit-breaker/circuit-breaker.module.js';
import { AccessMetrics } from './access.metrics.js';
import { AnswerMetrics } from './answer.metrics.js';
import { CacheMetrics } from './cache.metrics.js';
import { CircuitBreakerMetrics } from './circuit-breaker.metrics.js';
import { HttpMetrics } from './http.metrics.js';
import { METRICS_REGISTRY } from './metrics.constants.js';
import { MetricsController } from './metrics.controller.js';
import { MetricsListener } from './metrics.listener.js';

function createMetricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * Prometheus metrics at GET /metrics, on plain prom-client: @willsoto/nestjs-prometheus is CommonJS-only and ESM jest cannot load it with Nest 12.
 * Breakers and the cache are read or observed here, so the domain services hold no metrics code.
 */
@Module({
  imports: [CircuitBreakerModule, AnswerCacheModule, AssistantModule, AccessModule, ConfigModule.forFeature(appConfig)],
  controllers: [MetricsController],
  providers: [
    { provide: METRICS_REGISTRY, useFactory: createMetricsRegistry },
    AccessMetrics,
    AnswerMetrics,
    CacheMetrics,
    CircuitBreakerMetrics,
    HttpMetrics,
    MetricsListener,
  ],
  exports: [METRICS_REGISTRY],
})
export class MetricsModule {}
