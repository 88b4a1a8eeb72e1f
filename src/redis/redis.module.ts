import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { cacheConfig } from '../config/cache.config.js';
import { RedisConnection } from './redis-connection.js';
import { RedisSubscriber } from './redis-subscriber.js';

@Module({
  imports: [ConfigModule.forFeature(cacheConfig)],
  providers: [RedisConnection, RedisSubscriber],
  exports: [RedisConnection, RedisSubscriber],
})
export class RedisModule {}
