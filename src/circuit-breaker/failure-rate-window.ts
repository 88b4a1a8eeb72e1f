/** The failure-rate policy beside the consecutive threshold; `rate` 0 turns it off. Times in milliseconds. */
export interface FailureRatePolicy {
  /** Opens when at least this fraction (0 < r <= 1) of the window's calls failed; 0 = off. */
  failureRate: number;
  /** The window: ten buckets of a tenth of it each, aligned to the clock. */
  windowMs: number;
  /** Calls (successes and failures) the window must hold before the rate may open the circuit. */
  minCalls: number;
}

/** The window is counted in this many buckets, as resilience4j's time-based window and Polly v8's advanced breaker do. */
export const WINDOW_BUCKETS = 10;

/**
 * The calls of the last `windowMs` (the current bucket and the nine before it, a bucket being `windowMs / 10` of the
 * clock: `floor(t / bucketMs)`), as a ring of counters: O(1) a call, ten numbers a breaker. The fleet's script
 * (fleet/circuit-scripts.ts) keeps the same buckets on Redis' clock.
 */
export class FailureRateWindow {
  private readonly bucketMs: number;
  private readonly calls = new Array<number>(WINDOW_BUCKETS).fill(0);
  private readonly failures = new Array<number>(WINDOW_BUCKETS).fill(0);
  /** The bucket number each ring slot holds. */
  private readonly slots = new Array<number>(WINDOW_BUCKETS).fill(-1);

  constructor(private readonly policy: FailureRatePolicy) {
    this.bucketMs = Math.max(1, policy.windowMs / WINDOW_BUCKETS);
  }

  get enabled(): boolean {
    return this.policy.failureRate > 0;
  }

  /** Counts a call that ended at `now`; true when the window's failure rate now opens the circuit. */
  record(now: number, failed: boolean): boolean {
    if (!this.enabled) return false;
    const bucket = Math.floor(now / this.bucketMs);
    const slot = ((bucket % WINDOW_BUCKETS) + WINDOW_BUCKETS) % WINDOW_BUCKETS;
    if (this.slots[slot] !== bucket) {
      this.slots[slot] = bucket;
      this.calls[slot] = 0;
      this.failures[slot] = 0;
    }
    this.calls[slot]++;
    if (failed) this.failures[slot]++;
    return failed && this.trips(bucket);
  }

  /** Forgets every call: a state change starts counting anew. */
  clear(): void {
    this.slots.fill(-1);
  }

  private trips(current: number): boolean {
    let calls = 0;
    let failures = 0;
    for (let slot = 0; slot < WINDOW_BUCKETS; slot++) {
      const age = current - this.slots[slot];
      if (this.slots[slot] < 0 || age < 0 || age >= WINDOW_BUCKETS) continue;
      calls += this.calls[slot];
      failures += this.failures[slot];
    }
    // A quotient, not failures >= rate * calls: 0.1 * 30 is a little over 3 in binary floating point.
    return calls >= this.policy.minCalls && failures / calls >= this.policy.failureRate;
  }
}
