import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { DiscoveryModule } from '@nestjs/core';
import { TerminusModule } from '@nestjs/terminus';
import { circuitBreakerConfig } from '../config/circuit-breaker.config.js';
import { CircuitBreakerExplorer } from './circuit-breaker.explorer.js';
import { CircuitBreakerHealthIndicator } from './circuit-breaker.health.js';
import { CircuitBreakerRegistry } from './circuit-breaker.registry.js';
import { SharedCircuitStore } from './fleet/shared-circuit-store.js';
import { RedisModule } from '../redis/redis.module.js';

@Module({
  imports: [DiscoveryModule, TerminusModule, RedisModule, ConfigModule.forFeature(circuitBreakerConfig)],
  providers: [SharedCircuitStore, CircuitBreakerRegistry, CircuitBreakerExplorer, CircuitBreakerHealthIndicator],
  exports: [CircuitBreakerRegistry, CircuitBreakerHealthIndicator],
})
export class CircuitBreakerModule {}
