import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { cacheConfig } from '../config/cache.config.js';
import { RedisModule } from '../redis/redis.module.js';
import { FleetLeases } from './fleet-leases.js';

/** Coalescing across the fleet: leases on questions in Redis, and waits on their channels (single-flight.ts is in process). */
@Module({
  imports: [RedisModule, ConfigModule.forFeature(cacheConfig)],
  providers: [FleetLeases],
  exports: [FleetLeases],
})
export class CoalescingModule {}
