import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { APP_GUARD } from '@nestjs/core';
import { accessConfig } from '../config/access.config.js';
import { ApiKeyGuard } from './api-key.guard.js';

/** API keys for every route not marked @PublicRoute(), when ASSISTANT_API_KEYS is set. */
@Module({
  imports: [ConfigModule.forFeature(accessConfig)],
  providers: [{ provide: APP_GUARD, useClass: ApiKeyGuard }],
})
export class AccessModule {}
