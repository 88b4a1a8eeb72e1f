import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import type { ThrottlerStorage } from '@nestjs/throttler';
import { SlidingWindowCounter } from '../rate-limit/sliding-window.js';
import { FAILED_KEY_CHECKS_PER_MINUTE as BUDGET, KeyCheckBudget } from './key-check-budget.js';

type StorageRecord = Awaited<ReturnType<ThrottlerStorage['increment']>>;

/** The rate limiter's rule (a sliding window, refusals not counted) in memory; `spentElsewhere` plays another replica's failures. */
class WindowStorage implements ThrottlerStorage {
  readonly keys: string[] = [];
  private readonly counter = new SlidingWindowCounter();

  increment(key: string, ttl: number, limit: number): Promise<StorageRecord> {
    this.keys.push(key);
    const { hits, admitted, msLeft } = this.counter.hit(key, ttl, limit);
    const seconds = Math.max(1, Math.ceil(msLeft / 1000));
    return Promise.resolve({
      totalHits: admitted ? hits : hits + 1,
      timeToExpire: seconds,
      isBlocked: !admitted,
      timeToBlockExpire: admitted ? 0 : seconds,
    });
  }

  spentElsewhere(address: string, failures: number): void {
    for (let i = 0; i < failures; i++) this.counter.hit(`key-checks:address:${address}`, 60_000, BUDGET);
  }
}

describe('KeyCheckBudget', () => {
  let storage: WindowStorage;
  let budget: KeyCheckBudget;

  beforeEach(() => {
    jest.useFakeTimers();
    storage = new WindowStorage();
    budget = new KeyCheckBudget(storage);
  });
  afterEach(() => {
    budget.onApplicationShutdown();
    jest.useRealTimers();
  });

  it(`lets an address fail ${BUDGET} times a minute, then refuses it until its oldest failure leaves the window`, async () => {
    for (let i = 0; i < BUDGET; i++) {
      expect(budget.secondsRefused('a')).toBeUndefined();
      expect(await budget.failed('a')).toBeUndefined();
      jest.advanceTimersByTime(1000);
    }
    // the first failure was 20 s ago: it leaves the window in 40 s
    expect(budget.secondsRefused('a')).toBe(40);
    expect(budget.secondsRefused('b')).toBeUndefined();
    jest.advanceTimersByTime(39_000);
    expect(budget.secondsRefused('a')).toBe(1);
    jest.advanceTimersByTime(1000);
    expect(budget.secondsRefused('a')).toBeUndefined();
    // room for exactly one more failure: the second one left the window with it
    expect(await budget.failed('a')).toBeUndefined();
    expect(budget.secondsRefused('a')).toBeGreaterThan(0);
  });

  it('refuses at once an address whose budget other replicas spent, from the failure that finds it spent', async () => {
    storage.spentElsewhere('a', BUDGET);
    expect(budget.secondsRefused('a')).toBeUndefined();

    expect(await budget.failed('a')).toBe(60);
    expect(budget.secondsRefused('a')).toBe(60);
  });

  it('counts under its own name in the storage, apart from the answer limits', async () => {
    await budget.failed('203.0.113.9');
    expect(storage.keys).toEqual(['key-checks:address:203.0.113.9']);
  });
});
