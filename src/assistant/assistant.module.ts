import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { APP_FILTER } from '@nestjs/core';
import { AnswerCacheModule } from '../cache/answer-cache.module.js';
import { CoalescingModule } from '../coalescing/coalescing.module.js';
import { assistantConfig } from '../config/assistant.config.js';
import { rateLimitConfig } from '../config/rate-limit.config.js';
import { CallerConcurrency } from '../rate-limit/caller-concurrency.js';
import { HfTextGenModule } from '../hf-textgen/hf-textgen.module.js';
import { KnowledgeModule } from '../knowledge/knowledge.module.js';
import { AssistantController } from './assistant.controller.js';
import { AssistantService } from './assistant.service.js';
import { MaxQueryLengthPipe } from './max-query-length.pipe.js';
import { UpstreamUnavailableFilter } from './upstream-unavailable.filter.js';
import { ClientGoneFilter } from './client-gone.filter.js';

@Module({
  imports: [
    ConfigModule.forFeature(assistantConfig),
    ConfigModule.forFeature(rateLimitConfig),
    AnswerCacheModule,
    CoalescingModule,
    HfTextGenModule,
    KnowledgeModule,
  ],
  controllers: [AssistantController],
  providers: [
    AssistantService,
    CallerConcurrency,
    MaxQueryLengthPipe,
    { provide: APP_FILTER, useClass: UpstreamUnavailableFilter },
    { provide: APP_FILTER, useClass: ClientGoneFilter },
  ],
  exports: [AssistantService],
})
export class AssistantModule {}
