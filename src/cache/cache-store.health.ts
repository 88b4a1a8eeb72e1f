import { Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { RedisConnection } from '../redis/redis-connection.js';

/** The answer cache's store: in-process memory is always up; Redis is up while connected. */
@Injectable()
export class CacheStoreHealthIndicator {
  constructor(
    private readonly redis: RedisConnection,
    private readonly health: HealthIndicatorService,
  ) {}

  isHealthy(key = 'cache'): HealthIndicatorResult {
    const indicator = this.health.check(key);
    if (!this.redis.client) return indicator.up({ store: 'memory' });
    const problem = this.redis.problem;
    return problem === undefined ? indicator.up({ store: 'redis' }) : indicator.down({ store: 'redis', message: problem });
  }
}
