import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { AccessModule } from './access/access.module.js';
import { AssistantModule } from './assistant/assistant.module.js';
import { CircuitBreakerModule } from './circuit-breaker/circuit-breaker.module.js';
import { appConfig } from './config/app.config.js';
import { HealthModule } from './health/health.module.js';
import { MetricsModule } from './metrics/metrics.module.js';
import { OpenAiModule } from './openai/openai.module.js';
import { LoggingModule } from './logging/logging.module.js';
import { RateLimitModule } from './rate-limit/rate-limit.module.js';

@Module({
  // main.ts merges the env file into the environment before this module is built (see loadEnvironment).
  imports: [
    ConfigModule.forRoot({ isGlobal: true, ignoreEnvFile: true, load: [appConfig] }),
    LoggingModule,
    AccessModule,
    RateLimitModule,
    CircuitBreakerModule,
    AssistantModule,
    OpenAiModule,
    HealthModule,
    MetricsModule,
  ],
})
export class AppModule {}
