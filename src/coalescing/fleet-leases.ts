import { randomUUID } from 'node:crypto';
import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { abortReason, withinDeadline } from '../common/deadline.js';
import { cacheConfig } from '../config/cache.config.js';
import { RedisConnection } from '../redis/redis-connection.js';
import { RedisSubscriber } from '../redis/redis-subscriber.js';
import { ACQUIRE_LEASE, decodeAcquired, decodeFleetOutcome, encodeRelease, type FleetOutcome, RELEASE_LEASE } from './lease.scripts.js';
import { runScript } from '../redis/redis-script.js';

export type { FleetOutcome } from './lease.scripts.js';

/** A Redis that does not answer must not hold the request: past this the replica coalesces on its own. */
const REDIS_DEADLINE_MS = 250;
/** A waiter outlasts the lease it waits on by this much, then asks itself: its holder died, or ran long. */
const EXPIRY_GRACE_MS = 250;
const LEASE_PREFIX = 'assistant:coalesce:v1:lease:';
const CHANNEL_PREFIX = 'assistant:coalesce:v1:done:';

/** A lease this replica holds on a question: given back once, with how its call went. */
export interface Lease {
  release(outcome: FleetOutcome): Promise<void>;
}

/** What claiming a question came to: this replica asks (holding the lease, or alone without Redis), or another one does. */
export type Claim = { kind: 'owner'; lease: Lease } | { kind: 'held'; ttlMs: number } | { kind: 'alone' };

/** How waiting for another replica's answer ended. */
export type Waited<T> =
  { kind: 'answered'; value: T } | { kind: 'failed'; outcome: Extract<FleetOutcome, { kind: 'failed' }> } | { kind: 'ask' };

const ALONE: Claim = { kind: 'alone' };

/**
 * Coalescing across the fleet (with REDIS_URL): the replica that asks the model for a question holds a short lease
 * on it (SET NX PX with its own token); the others wait, on the question's channel, for the answer to reach the
 * cache, at most CACHE_COALESCE_WAIT_SECONDS and no longer than the lease lives. The owner gives the lease back only
 * while it still owns it, and publishes how its call went. Redis down: every replica coalesces on its own.
 */
@Injectable()
export class FleetLeases implements OnApplicationBootstrap {
  private readonly waitMs: number;

  constructor(
    private readonly redis: RedisConnection,
    private readonly subscriber: RedisSubscriber,
    @Inject(cacheConfig.KEY) config: ConfigType<typeof cacheConfig>,
  ) {
    this.waitMs = config.coalesceWaitMs;
  }

  /** Configured: Redis, and a wait above 0 (without a wait a lease would make nobody wait). */
  get enabled(): boolean {
    return this.redis.client !== undefined && this.waitMs > 0;
  }

  /** The subscribed connection is opened before the first request, so the first wait does not pay for it. */
  onApplicationBootstrap(): void {
    if (this.enabled) void this.subscriber.open().catch(() => undefined);
  }

  /** Takes the lease on `question` for `ttlMs`, or says who has it; without Redis (or Redis failing), 'alone'. */
  async claim(question: string, ttlMs: number): Promise<Claim> {
    const client = this.redis.client;
    if (!client || !this.enabled || !this.redis.isReady) return ALONE;
    const token = randomUUID();
    const options = { keys: [LEASE_PREFIX + question], arguments: [JSON.stringify({ token, ttlMs })] };
    const reply = await withinDeadline(runScript(client, ACQUIRE_LEASE, options), REDIS_DEADLINE_MS, () => undefined);
    const acquired = reply === undefined ? undefined : decodeAcquired(reply);
    if (!acquired) return ALONE;
    if (!acquired.acquired) return { kind: 'held', ttlMs: acquired.ttlMs };
    let released = false;
    const lease: Lease = {
      release: async (outcome) => {
        if (released) return;
        released = true;
        const keys = [LEASE_PREFIX + question, CHANNEL_PREFIX + question];
        await withinDeadline(
          runScript(client, RELEASE_LEASE, { keys, arguments: [encodeRelease(token, outcome)] }),
          REDIS_DEADLINE_MS,
          () => undefined,
        );
      },
    };
    return { kind: 'owner', lease };
  }

  /**
   * Waits for the holder of `question`'s lease: `read` is asked once subscribed (no wake-up is lost in between) and
   * on each wake-up. 'ask': the wait is over without an answer (timed out, the holder gave up, Redis failed), so this
   * replica asks itself. `onTimeout` is told when the wait ran out. `signal` aborting rejects with its reason.
   */
  async wait<T>(
    question: string,
    heldMs: number,
    read: () => Promise<T | undefined>,
    signal: AbortSignal,
    onTimeout: () => void,
  ): Promise<Waited<T>> {
    const inbox = new Inbox(Math.min(this.waitMs, Math.max(0, heldMs) + EXPIRY_GRACE_MS), signal);
    const subscribing = this.subscriber.subscribe(CHANNEL_PREFIX + question, (message) => inbox.put(decodeFleetOutcome(message)));
    const unsubscribe = await withinDeadline(subscribing, REDIS_DEADLINE_MS, () => undefined);
    // Confirmed only after this wait gave up on it: nobody listens any more.
    if (!unsubscribe)
      void subscribing.then(
        (late) => late(),
        () => undefined,
      );
    try {
      if (!unsubscribe) return { kind: 'ask' };
      const first = await read();
      if (first !== undefined) return { kind: 'answered', value: first };
      const message = await inbox.next();
      if (message === 'timeout') {
        onTimeout();
        return { kind: 'ask' };
      }
      if (message.kind === 'failed') return { kind: 'failed', outcome: message };
      // Answered: the cache has it (unless its write failed there); abandoned: nobody is asking any more.
      const value = message.kind === 'answered' ? await read() : undefined;
      return value === undefined ? { kind: 'ask' } : { kind: 'answered', value };
    } finally {
      inbox.close();
      unsubscribe?.();
    }
  }
}

/** The first message of a wait, or 'timeout'; the signal aborting rejects. */
class Inbox {
  private readonly timer: NodeJS.Timeout;
  private resolve?: (message: FleetOutcome | 'timeout') => void;
  private reject?: (error: Error) => void;
  private readonly arrived: Promise<FleetOutcome | 'timeout'>;
  private readonly onAbort: () => void;

  constructor(
    ms: number,
    private readonly signal: AbortSignal,
  ) {
    this.arrived = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // A rejection nobody awaits yet (aborted while subscribing) must not be unhandled.
    this.arrived.catch(() => undefined);
    this.timer = setTimeout(() => this.resolve?.('timeout'), ms);
    this.onAbort = () => this.reject?.(abortReason(signal));
    if (signal.aborted) this.onAbort();
    else signal.addEventListener('abort', this.onAbort, { once: true });
  }

  put(message: FleetOutcome | undefined): void {
    if (message) this.resolve?.(message);
  }

  next(): Promise<FleetOutcome | 'timeout'> {
    return this.arrived;
  }

  close(): void {
    clearTimeout(this.timer);
    this.signal.removeEventListener('abort', this.onAbort);
  }
}
