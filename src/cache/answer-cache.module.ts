import { createKeyv } from '@cacheable/memory';
import { CacheModule } from '@nestjs/cache-manager';
import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { TerminusModule } from '@nestjs/terminus';
import { KeyvAdapter } from 'cache-manager';
import { redisInsStore } from 'cache-manager-redis-yet';
import { Keyv } from 'keyv';
import { cacheConfig } from '../config/cache.config.js';
import { AnswerCache } from './answer-cache.js';
import { CacheStoreHealthIndicator } from './cache-store.health.js';
import { RedisConnection } from './redis-connection.js';
import { RedisModule } from './redis.module.js';

/** In-process memory is bounded so many distinct questions cannot grow the heap without limit. Entries are never
 * mutated, so reads need no defensive copy (the copy was most of a cache hit's cost). */
const MEMORY_CACHE_MAX_ENTRIES = 10_000;

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
            : createKeyv({ lruSize: MEMORY_CACHE_MAX_ENTRIES, useClone: false }),
        ],
      }),
    }),
  ],
  providers: [AnswerCache, CacheStoreHealthIndicator],
  exports: [AnswerCache, CacheStoreHealthIndicator],
})
export class AnswerCacheModule {}
