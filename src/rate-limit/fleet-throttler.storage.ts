import { randomUUID } from 'node:crypto';
import { Logger, type OnApplicationShutdown } from '@nestjs/common';
import type { ThrottlerStorage } from '@nestjs/throttler';
import { RedisConnection } from '../redis/redis-connection.js';
import { redisScript, runScript } from '../redis/redis-script.js';
import { withinDeadline } from '../common/deadline.js';
import { SlidingWindowCounter, type WindowHit } from './sliding-window.js';

type ThrottlerStorageRecord = Awaited<ReturnType<ThrottlerStorage['increment']>>;

/** Counters live under this prefix in the shared Redis; the version changes if their meaning does. */
export const RATE_LIMIT_KEY_PREFIX = 'assistant:ratelimit:v1:';
/** A Redis slower than this costs the request no more: the hit is counted by this replica instead. */
const REDIS_DEADLINE_MS = 250;
/** How often callers idle for a whole window are forgotten by the per-replica counter. */
const SWEEP_INTERVAL_MS = 60_000;

/**
 * One request against a sliding window, atomically and on Redis' clock: the hits of the last `window` ms are the
 * members of a sorted set scored by time. Under the limit the request is added; over it, it is refused and not
 * added (a caller hammering while refused does not push its own recovery back). Returns
 * {hits in the window, 1 if admitted else 0, ms until the oldest hit leaves the window}.
 */
const HIT_SCRIPT = `
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local hits = redis.call('ZCARD', KEYS[1])
local admitted = 0
if hits < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  hits = hits + 1
  admitted = 1
end
redis.call('PEXPIRE', KEYS[1], window)
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local left = window
if oldest[2] then left = tonumber(oldest[2]) + window - now end
return {hits, admitted, left}`;
const HIT = redisScript('hit', HIT_SCRIPT);

/**
 * `@nestjs/throttler`'s storage, shared by the fleet: hits are counted in Redis when REDIS_URL is set, so every
 * replica spends the same budget. Without Redis, or while it is down or slow, each replica counts on its own
 * (SlidingWindowCounter, the same rule in memory): a limit per replica, never an unlimited fleet and never an error.
 * Both refuse without counting the refused request. The library's own in-memory storage is not used: it scans every
 * hit of a caller's window on each request (O(limit)) and spreads them into Math.min, which overflows the stack past
 * ~125 000 hits.
 */
export class FleetThrottlerStorage implements ThrottlerStorage, OnApplicationShutdown {
  private readonly logger = new Logger(FleetThrottlerStorage.name);
  private readonly local = new SlidingWindowCounter();
  private readonly sweeper = setInterval(() => this.local.sweep(), SWEEP_INTERVAL_MS).unref();
  private countingLocally = false;

  constructor(private readonly redis: RedisConnection) {}

  /** `ttl`: the window in ms. Refusals are the window's own (no separate block), so `blockDuration` is not used. */
  async increment(key: string, ttl: number, limit: number): Promise<ThrottlerStorageRecord> {
    if (this.redis.client) {
      const shared = this.redis.isReady
        ? await this.incrementShared(key, ttl, limit)
        : this.sharingFailed(this.redis.problem ?? 'not ready');
      if (shared) return shared;
    }
    return toRecord(this.local.hit(key, ttl, limit));
  }

  onApplicationShutdown(): void {
    clearInterval(this.sweeper);
    this.local.clear();
  }

  /** The fleet's count, or undefined when Redis failed or missed the deadline. */
  private async incrementShared(key: string, ttlMs: number, limit: number): Promise<ThrottlerStorageRecord | undefined> {
    const reply = await withinDeadline(this.hit(`${RATE_LIMIT_KEY_PREFIX}${key}`, ttlMs, limit), REDIS_DEADLINE_MS, (why) =>
      this.sharingFailed(why),
    );
    if (reply === undefined) return undefined;
    this.sharingWorks();
    const [hits, admitted, msLeft] = reply;
    return toRecord({ hits, admitted: admitted === 1, msLeft });
  }

  private async hit(key: string, windowMs: number, limit: number): Promise<[number, number, number]> {
    const client = this.redis.client!;
    // The member only has to be unique: two hits in the same millisecond are two hits.
    const options = { keys: [key], arguments: [String(windowMs), String(limit), randomUUID()] };
    return (await runScript(client, HIT, options)) as [number, number, number];
  }

  private sharingFailed(why: string): undefined {
    if (!this.countingLocally) {
      this.countingLocally = true;
      this.logger.warn(`Rate limits are counted by this replica alone while Redis is unavailable (${why})`);
    }
    return undefined;
  }

  private sharingWorks(): void {
    if (!this.countingLocally) return;
    this.countingLocally = false;
    this.logger.log('Rate limits are counted across the fleet in Redis again');
  }
}

/** The library's record: a refused request reports one hit over the limit, and every time is whole seconds, at least 1. */
function toRecord({ hits, admitted, msLeft }: WindowHit): ThrottlerStorageRecord {
  const secondsLeft = Math.max(1, Math.ceil(msLeft / 1000));
  return {
    totalHits: admitted ? hits : hits + 1,
    timeToExpire: secondsLeft,
    isBlocked: !admitted,
    timeToBlockExpire: admitted ? 0 : secondsLeft,
  };
}
