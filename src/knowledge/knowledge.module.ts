import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { knowledgeConfig } from '../config/knowledge.config.js';
import { KnowledgeBase } from './knowledge-base.js';

@Module({
  imports: [ConfigModule.forFeature(knowledgeConfig)],
  providers: [KnowledgeBase],
  exports: [KnowledgeBase],
})
export class KnowledgeModule {}
