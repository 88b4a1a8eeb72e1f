import { Module } from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import { ConfigModule } from '@nestjs/config';
import { APP_GUARD } from '@nestjs/core';
import { ThrottlerModule } from '@nestjs/throttler';
import { RedisConnection } from '../redis/redis-connection.js';
import { RedisModule } from '../redis/redis.module.js';
import { rateLimitConfig } from '../config/rate-limit.config.js';
import { FleetThrottlerStorage } from './fleet-throttler.storage.js';
import { RATE_LIMIT_WINDOW_SECONDS, RateLimitGuard } from './rate-limit.guard.js';

/**
 * RATE_LIMIT_PER_MINUTE on the answer routes, with `@nestjs/throttler` (its guard, options and storage interface)
 * counting in the shared Redis. Imported after AccessModule, so its guard runs after the API key guard.
 */
@Module({
  imports: [
    ThrottlerModule.forRootAsync({
      imports: [ConfigModule.forFeature(rateLimitConfig), RedisModule],
      inject: [rateLimitConfig.KEY, RedisConnection],
      useFactory: (config: ConfigType<typeof rateLimitConfig>, redis: RedisConnection) => ({
        // blockDuration 0: a sliding window whose refusals are not counted, so a caller recovers as its old hits age out.
        throttlers: [{ limit: config.perMinute, ttl: RATE_LIMIT_WINDOW_SECONDS * 1000, blockDuration: 0 }],
        storage: new FleetThrottlerStorage(redis),
      }),
    }),
  ],
  providers: [{ provide: APP_GUARD, useClass: RateLimitGuard }],
})
export class RateLimitModule {}
