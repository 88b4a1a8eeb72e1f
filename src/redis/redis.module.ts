import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { cacheConfig } from '../config/cache.config.js';
import { RedisConnection } from './redis-connection.js';

@Module({
  imports: [ConfigModule.forFeature(cacheConfig)],
  providers: [RedisConnection],
  exports: [RedisConnection],
})
export class RedisModule {}
