import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { APP_FILTER } from '@nestjs/core';
import { AssistantModule } from '../assistant/assistant.module.js';
import { assistantConfig } from '../config/assistant.config.js';
import { hfTextGenConfig } from '../config/hf-textgen.config.js';
import { HfTextGenModule } from '../hf-textgen/hf-textgen.module.js';
import { ChatCompletionRequestPipe } from './chat-completion-request.pipe.js';
import { ChatCompletionsController } from './chat-completions.controller.js';
import { ModelsController } from './models.controller.js';
import { OpenAiPathExceptionFilter } from './openai-exception.filter.js';

/** OpenAI's Chat Completions and Models APIs over the assistant's one answer chain: another format of the same answers. */
@Module({
  imports: [ConfigModule.forFeature(assistantConfig), ConfigModule.forFeature(hfTextGenConfig), AssistantModule, HfTextGenModule],
  controllers: [ChatCompletionsController, ModelsController],
  providers: [ChatCompletionRequestPipe, { provide: APP_FILTER, useClass: OpenAiPathExceptionFilter }],
})
export class OpenAiModule {}
