import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { TerminusModule } from '@nestjs/terminus';
import { CircuitBreakerModule } from '../circuit-breaker/circuit-breaker.module.js';
import { circuitBreakerConfig } from '../config/circuit-breaker.config.js';
import { hfTextGenConfig } from '../config/hf-textgen.config.js';
import { HfTextGenHealthIndicator } from './hf-textgen.health.js';
import { ModelTargets } from './model-targets.js';

/** The model targets, each an HfTextGenClient behind its own breaker. */
@Module({
  imports: [ConfigModule.forFeature(hfTextGenConfig), ConfigModule.forFeature(circuitBreakerConfig), CircuitBreakerModule, TerminusModule],
  providers: [ModelTargets, HfTextGenHealthIndicator],
  exports: [ModelTargets, HfTextGenHealthIndicator],
})
export class HfTextGenModule {}
