import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { AnswerCacheModule } from '../cache/answer-cache.module.js';
import { CircuitBreakerModule } from '../circuit-breaker/circuit-breaker.module.js';
import { HfTextGenModule } from '../hf-textgen/hf-textgen.module.js';
import { ApplicationReadiness } from './application-readiness.js';
import { HealthController } from './health.controller.js';

@Module({
  // A failing check is an answer to the caller, not an error: breaker transitions are logged where they happen.
  imports: [TerminusModule.forRoot({ logger: false }), CircuitBreakerModule, AnswerCacheModule, HfTextGenModule],
  controllers: [HealthController],
  providers: [ApplicationReadiness],
  exports: [ApplicationReadiness],
})
export class HealthModule {}
