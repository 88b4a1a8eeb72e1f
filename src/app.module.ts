import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { AssistantModule } from './assistant/assistant.module.js';
import { CircuitBreakerModule } from './circuit-breaker/circuit-breaker.module.js';
import { appConfig } from './config/app.config.js';
import { HealthModule } from './health/health.module.js';

@Module({
  // Env files are merged into process.env by main.ts before this module is built (see loadEnvironment).
  imports: [ConfigModule.forRoot({ isGlobal: true, ignoreEnvFile: true, load: [appConfig] }), CircuitBreakerModule, AssistantModule, HealthModule],
})
export class AppModule {}
