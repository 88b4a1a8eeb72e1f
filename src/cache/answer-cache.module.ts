import { CacheModule } from '@nestjs/cache-manager';
import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { TerminusModule } from '@nestjs/terminus';
import { KeyvAdapter } from 'cache-manager';
import { redisInsStore } from 'cache-manager-redis-yet';
import { Keyv } from 'keyv';
import { cacheConfig } from '../config/cache.config.js';
import { AnswerCache } from './answer-cache.js';
import { memoryKeyv } from './byte-bounded-store.js';
import { CacheStoreHealthIndicator } from './cache-store.health.js';
import { RedisConnection } from '../redis/redis-connection.js';
import { RedisModule } from '../redis/redis.module.js';

/** The answers in Redis when it is configured; else in process, in one LRU bounded by bytes (byte-bounded-store.ts). */
@Module({
  imports: [
    RedisModule,
    TerminusModule,
    ConfigModule.forFeature(cacheConfig),
    CacheModule.registerAsync({
      imports: [RedisModule],
      inject: [RedisConnection],
      useFactory: (redis: RedisConnection) => ({
        stores: [
          redis.client
            ? new Keyv({ store: new KeyvAdapter(redisInsStore(redis.client as Parameters<typeof redisInsStore>[0])) })
            : memoryKeyv(),
        ],
      }),
    }),
  ],
  providers: [AnswerCache, CacheStoreHealthIndicator],
  exports: [AnswerCache, CacheStoreHealthIndicator],
})
export class AnswerCacheModule {}
