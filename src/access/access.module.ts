import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { APP_GUARD } from '@nestjs/core';
import { accessConfig } from '../config/access.config.js';
import { ApiKeyChecks } from './api-key-checks.js';
import { ApiKeyGuard } from './api-key.guard.js';
import { KeyCheckBudget } from './key-check-budget.js';

/**
 * API keys for every route not marked @PublicRoute(), when ASSISTANT_API_KEYS is set, with a budget of failed checks
 * per client address counted in the rate limiter's storage (@nestjs/throttler's, global, from RateLimitModule).
 */
@Module({
  imports: [ConfigModule.forFeature(accessConfig)],
  providers: [KeyCheckBudget, ApiKeyChecks, { provide: APP_GUARD, useClass: ApiKeyGuard }],
  exports: [ApiKeyChecks],
})
export class AccessModule {}
