// Reference model of the fleet's circuit breaker, written from CONTRACT.md ("What counts as a
// failure", "Fleet") only. Pure and deterministic: time and randomness come from the caller.

export type ModelState = 'closed' | 'open' | 'half_open';
export type ModelOutcome =
  | { kind: 'success' }
  | { kind: 'rejected' }
  | { kind: 'abandoned' }
  | { kind: 'failure' }
  | { kind: 'fatal' }
  | { kind: 'hint'; holdMs: number };
export type ModelAdmission = 'call' | 'trial' | 'refused';
export interface ModelConfig {
  failureThreshold: number;
  resetTimeoutMs: number;
  maxOpenMs: number;
  resetBackoff: number;
  failureRate: number;
  windowMs: number;
  minCalls: number;
  leaseMs: number;
}
export interface PendingCall {
  id: number;
  replica: number;
  trial: boolean;
}

interface CallRecord {
  id: number;
  replica: number;
  trial: boolean;
  // Rule: a disabled replica's outcomes are not counted at all.
  counted: boolean;
  // Rule: a call remembers the generation it was admitted in.
  generation: number;
}

interface Bucket {
  successes: number;
  failures: number;
}

// Rule: the failure-rate window is 10 clock-aligned buckets of windowMs / 10.
const BUCKETS = 10;

export class CircuitContractModel {
  private readonly config: ModelConfig;
  private readonly enabled: readonly boolean[];
  private readonly bucketMs: number;
  private current: ModelState = 'closed';
  private generation = 0;
  private openUntil = 0;
  private consecutiveFailures = 0;
  private failedTrials = 0;
  private leaseHolder: number | undefined = undefined;
  private leaseUntil = 0;
  private readonly window = new Map<number, Bucket>();
  private readonly calls = new Map<number, CallRecord>();

  constructor(config: ModelConfig, replicasEnabled: readonly boolean[]) {
    this.config = { ...config };
    this.enabled = [...replicasEnabled];
    this.bucketMs = config.windowMs / BUCKETS;
    if (config.failureRate > 0 && !(this.bucketMs > 0)) {
      throw new Error('failure-rate policy needs windowMs > 0');
    }
  }

  admit(id: number, replica: number, now: number): ModelAdmission {
    if (replica < 0 || replica >= this.enabled.length || !Number.isInteger(replica)) {
      throw new Error(`unknown replica ${replica}`);
    }
    if (this.calls.has(id)) throw new Error(`call ${id} is already pending`);
    this.advance(now);
    // Rule: a disabled replica is never refused and never takes the trial.
    if (this.enabled[replica] !== true) {
      this.register(id, replica, false, false);
      return 'call';
    }
    // Rule: closed admits every call.
    if (this.current === 'closed') {
      this.register(id, replica, false, true);
      return 'call';
    }
    // Rule: open refuses while now < openUntil (advance() already handled now >= openUntil).
    if (this.current === 'open') return 'refused';
    // Rule: half-open, one trial in the fleet; a free or expired lease goes to this admit.
    if (this.leaseHolder === undefined || now >= this.leaseUntil) {
      this.leaseHolder = id;
      this.leaseUntil = now + this.config.leaseMs;
      this.register(id, replica, true, true);
      return 'trial';
    }
    // Rule: while a live lease is held, other enabled admits are refused.
    return 'refused';
  }

  settle(id: number, outcome: ModelOutcome, now: number, random = 0.5): void {
    const call = this.calls.get(id);
    if (call === undefined) throw new Error(`unknown call ${id}`);
    // Rule: a settled call is no longer pending.
    this.calls.delete(id);
    this.advance(now);
    // Rule: a disabled replica's outcomes change nothing.
    if (!call.counted) return;
    // Rule: an outcome of a call admitted before the last state change never changes the state.
    if (call.generation !== this.generation) return;
    if (call.trial) this.settleTrial(call, outcome, now, random);
    else if (this.current === 'closed') this.settleClosed(outcome, now);
  }

  state(now: number): ModelState {
    this.advance(now);
    return this.current;
  }

  /** consecutive failures as the contract counts them */
  get failures(): number {
    return this.consecutiveFailures;
  }

  /** while open: when the trial is due (openUntil); undefined otherwise */
  nextAttemptAt(now: number): number | undefined {
    this.advance(now);
    return this.current === 'open' ? this.openUntil : undefined;
  }

  /** the trial lease holder's call id while half-open with a live lease (now < leaseUntil); undefined otherwise */
  trialHolder(now: number): number | undefined {
    this.advance(now);
    if (this.current !== 'half_open' || this.leaseHolder === undefined) return undefined;
    return now < this.leaseUntil ? this.leaseHolder : undefined;
  }

  pending(): PendingCall[] {
    return [...this.calls.values()].map(({ id, replica, trial }) => ({ id, replica, trial }));
  }

  private register(id: number, replica: number, trial: boolean, counted: boolean): void {
    this.calls.set(id, { id, replica, trial, counted, generation: this.generation });
  }

  // Rule: lazily, an open circuit whose period has passed is half-open (a state change).
  private advance(now: number): void {
    if (this.current === 'open' && now >= this.openUntil) this.changeState('half_open');
  }

  // Rule: every state change starts a new generation, empties the window and drops the lease.
  private changeState(next: ModelState): void {
    this.current = next;
    this.generation += 1;
    this.window.clear();
    this.leaseHolder = undefined;
    this.leaseUntil = 0;
  }

  private settleClosed(outcome: ModelOutcome, now: number): void {
    switch (outcome.kind) {
      // Rule: a success resets the consecutive count and is one call in the window.
      case 'success':
        this.consecutiveFailures = 0;
        this.record(now, false);
        return;
      // Rule: rejected and abandoned calls count neither way.
      case 'rejected':
      case 'abandoned':
        return;
      default: {
        // Rule: failure, fatal and hint are counted failures (consecutive and in the window).
        this.consecutiveFailures += 1;
        this.record(now, true);
        const holdMs = outcome.kind === 'hint' ? outcome.holdMs : 0;
        const opens =
          outcome.kind !== 'failure' || // Rule: fatal and hint open at once.
          this.consecutiveFailures >= this.config.failureThreshold || // Rule: threshold.
          this.rateExceeded(now); // Rule: failure-rate policy.
        // Rule: open for min(maxOpenMs, max(resetTimeoutMs, holdMs)); the failure count is kept.
        if (opens) this.open(now, this.config.resetTimeoutMs, holdMs);
      }
    }
  }

  private settleTrial(call: CallRecord, outcome: ModelOutcome, now: number, random: number): void {
    if (this.current !== 'half_open') return;
    const answered = outcome.kind === 'success' || outcome.kind === 'rejected';
    // Rule: a trial whose lease passed to another trial still closes on an answer; else ignored.
    if (this.leaseHolder !== call.id) {
      if (answered) this.close();
      return;
    }
    // Rule: the holder's abandonment frees the lease, same state and generation.
    if (outcome.kind === 'abandoned') {
      this.leaseHolder = undefined;
      this.leaseUntil = 0;
      return;
    }
    // Rule: the upstream answered (success or request-specific rejection): the circuit closes.
    if (answered) {
      this.close();
      return;
    }
    // Rule: a failed trial re-opens for the backed-off period (or the hint's, if longer).
    this.consecutiveFailures += 1;
    this.failedTrials += 1;
    const holdMs = outcome.kind === 'hint' ? outcome.holdMs : 0;
    this.open(now, this.backedOffPeriod(random), holdMs);
  }

  // Rule: closing resets the consecutive failures and the failed-trial count.
  private close(): void {
    this.changeState('closed');
    this.consecutiveFailures = 0;
    this.failedTrials = 0;
  }

  // Rule: openUntil = now + floor(min(maxOpenMs, max(period, holdMs))).
  private open(now: number, periodMs: number, holdMs: number): void {
    this.changeState('open');
    this.openUntil = now + Math.floor(Math.min(this.config.maxOpenMs, Math.max(periodMs, holdMs)));
  }

  // Rule: reset period * backoff ** failedTrials, capped by maxOpenMs, ±10 % jitter above 1.
  private backedOffPeriod(random: number): number {
    const { resetTimeoutMs, resetBackoff, maxOpenMs } = this.config;
    if (resetBackoff <= 1) return resetTimeoutMs;
    const p = resetTimeoutMs * resetBackoff ** this.failedTrials;
    if (p >= maxOpenMs) return maxOpenMs * (1 - 0.1 * random);
    return Math.min(maxOpenMs, p * (0.9 + 0.2 * random));
  }

  // Rule: a call recorded at t belongs to bucket floor(t / bucketMs); keep only the live window.
  private record(now: number, failed: boolean): void {
    if (this.config.failureRate === 0) return;
    const index = Math.floor(now / this.bucketMs);
    const bucket = this.window.get(index) ?? { successes: 0, failures: 0 };
    if (failed) bucket.failures += 1;
    else bucket.successes += 1;
    this.window.set(index, bucket);
    for (const key of [...this.window.keys()]) {
      if (key <= index - BUCKETS) this.window.delete(key);
    }
  }

  // Rule: at least minCalls in the current bucket and the 9 before, and failures / calls >= rate.
  private rateExceeded(now: number): boolean {
    if (this.config.failureRate === 0) return false;
    const current = Math.floor(now / this.bucketMs);
    let calls = 0;
    let failures = 0;
    for (const [index, bucket] of this.window) {
      if (index > current - BUCKETS && index <= current) {
        calls += bucket.successes + bucket.failures;
        failures += bucket.failures;
      }
    }
    return calls > 0 && calls >= this.config.minCalls && failures / calls >= this.config.failureRate;
  }
}
