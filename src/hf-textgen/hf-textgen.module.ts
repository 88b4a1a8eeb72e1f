import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { TerminusModule } from '@nestjs/terminus';
import { hfTextGenConfig } from '../config/hf-textgen.config.js';
import { HfTextGenHealthIndicator } from './hf-textgen.health.js';
import { HfTextGenService } from './hf-textgen.service.js';

@Module({
  imports: [ConfigModule.forFeature(hfTextGenConfig), TerminusModule],
  providers: [HfTextGenService, HfTextGenHealthIndicator],
  exports: [HfTextGenService, HfTextGenHealthIndicator],
})
export class HfTextGenModule {}
