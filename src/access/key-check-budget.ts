import { Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { InjectThrottlerStorage, type ThrottlerStorage } from '@nestjs/throttler';

/** Failed key checks (no key, or a wrong one) one client address may make in any minute; past it, 429. */
export const FAILED_KEY_CHECKS_PER_MINUTE = 20;
const WINDOW_MS = 60_000;
/** Failures are counted under this name in the rate limiter's storage, apart from the answer limits. */
const COUNTER = 'key-checks';
/** How often addresses whose refusal has run out are forgotten. */
const SWEEP_INTERVAL_MS = 60_000;

/**
 * The budget of failed key checks per client address, so keys cannot be guessed at the rate the server answers.
 * Failures are counted in the rate limiter's storage: across the fleet in Redis with REDIS_URL (per replica while
 * Redis is unavailable), in a sliding minute. An address past the budget is refused by this replica without a look
 * at its key, from its own memory: no Redis round trip for a caller with a good key. A replica learns that an address
 * spent its budget when it counts one of its failures, so an address spreading its guesses over the replicas has
 * at most one more check on each replica that had not yet seen it refused.
 */
@Injectable()
export class KeyCheckBudget implements OnApplicationShutdown {
  /** Addresses past the budget, with when (performance.now) their oldest counted failure leaves the window. */
  private readonly refused = new Map<string, number>();
  private readonly sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS).unref();

  constructor(@InjectThrottlerStorage() private readonly storage: ThrottlerStorage) {}

  /** Seconds until `address` may have a key checked again; undefined while it is within its budget. */
  secondsRefused(address: string): number | undefined {
    const until = this.refused.get(address);
    if (until === undefined) return undefined;
    const msLeft = until - performance.now();
    if (msLeft > 0) return Math.ceil(msLeft / 1000);
    this.refused.delete(address);
    return undefined;
  }

  /**
   * Counts a failed check of `address`. Undefined when it was within the budget (the caller gets its 401), else the
   * seconds to wait: the budget was already spent, on another replica (the caller gets the 429 it would have had here).
   * The failure that spends the budget is itself a 401; the address is refused from the next request.
   */
  async failed(address: string): Promise<number | undefined> {
    const { totalHits, timeToExpire, isBlocked, timeToBlockExpire } = await this.storage.increment(
      `${COUNTER}:address:${address}`,
      WINDOW_MS,
      FAILED_KEY_CHECKS_PER_MINUTE,
      0,
      COUNTER,
    );
    if (!isBlocked && totalHits < FAILED_KEY_CHECKS_PER_MINUTE) return undefined;
    const seconds = isBlocked ? timeToBlockExpire : timeToExpire;
    this.refused.set(address, performance.now() + seconds * 1000);
    return isBlocked ? seconds : undefined;
  }

  onApplicationShutdown(): void {
    clearInterval(this.sweeper);
    this.refused.clear();
  }

  private sweep(): void {
    const now = performance.now();
    for (const [address, until] of this.refused) if (until <= now) this.refused.delete(address);
  }
}
