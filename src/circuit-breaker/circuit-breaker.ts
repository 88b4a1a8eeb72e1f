import { Logger } from '@nestjs/common';
import Opossum from 'opossum';
import { CallTimeoutError, CircuitOpenError } from './circuit-breaker.errors.js';

export type CircuitState = 'closed' | 'open' | 'half_open';

export interface CircuitBreakerOptions {
  /** false: calls go straight through (no fast-fail); the time-out still applies and stats are still kept. */
  enabled: boolean;
  /** Consecutive failures that open the circuit. */
  failureThreshold: number;
  /** Per-call limit; the call's AbortSignal is aborted when it passes. */
  timeoutMs: number;
  /** How long the circuit stays open before one half-open trial call. */
  resetTimeoutMs: number;
}

export interface GuardedCallOptions {
  /** Which errors say the upstream is unwell. Others (a bad request) reach the caller without counting. */
  isFailure?: (error: unknown) => boolean;
  /** The caller's own signal (e.g. its client went away); aborting it aborts the call, which then does not count. */
  signal?: AbortSignal;
}

export interface CircuitBreakerStats {
  successes: number;
  failures: number;
  timeouts: number;
  rejects: number;
  fallbacks: number;
}

export interface CircuitBreakerSnapshot {
  name: string;
  state: CircuitState;
  enabled: boolean;
  /** Consecutive failures since the last success. */
  failures: number;
  failureThreshold: number;
  openedAt?: string;
  nextAttemptAt?: string;
  /** Counts since start. */
  stats: CircuitBreakerStats;
}

type Task<T> = (signal: AbortSignal) => Promise<T>;

/** A call that ended in an error that is not the upstream's fault: opossum sees it settle, we rethrow it. */
class NeutralOutcome {
  constructor(readonly error: unknown) {}
}

/** Ends a call still running: aborts its signal with `reason` and rejects its promise with it. */
type AbortInFlight = (reason: Error) => void;

const everyErrorIsAFailure = () => true;

/**
 * One named breaker: opossum's state machine (open → half-open after the reset time-out, exactly one
 * trial call, calls during the trial rejected), tripped by consecutive failures instead of opossum's
 * rolling percentage, with a per-call AbortController for the time-out.
 */
export class CircuitBreaker {
  private readonly logger = new Logger(CircuitBreaker.name);
  private readonly breaker: Opossum<[() => Promise<unknown>], unknown>;
  private readonly counts: CircuitBreakerStats = { successes: 0, failures: 0, timeouts: 0, rejects: 0, fallbacks: 0 };
  private readonly inFlight = new Set<AbortInFlight>();
  private consecutiveFailures = 0;
  private openedAt?: number;
  private lastState: CircuitState = 'closed';

  constructor(
    readonly name: string,
    private readonly options: CircuitBreakerOptions,
  ) {
    // Always enabled underneath, so stats are kept; `options.enabled: false` only means it never opens.
    this.breaker = new Opossum((run: () => Promise<unknown>) => run(), {
      name,
      resetTimeout: options.resetTimeoutMs,
      // Our own per-call timer aborts the call's signal; opossum's would only stop waiting for it.
      timeout: false,
      // Only consecutive failures open the circuit: opossum's percentage rule must never fire first.
      volumeThreshold: Number.MAX_SAFE_INTEGER,
      errorThresholdPercentage: 100,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
    });
    this.breaker.on('success', (result: unknown) => this.onSuccess(result));
    this.breaker.on('failure', (error: unknown) => this.onFailure(error));
    this.breaker.on('open', () => this.onTransition('open'));
    this.breaker.on('halfOpen', () => this.onTransition('half_open'));
    this.breaker.on('close', () => this.onTransition('closed'));
  }

  get state(): CircuitState {
    if (this.breaker.opened) return 'open';
    if (this.breaker.halfOpen) return 'half_open';
    return 'closed';
  }

  /** Runs `task` behind the breaker; rejects with CircuitOpenError at once when the circuit refuses. */
  fire<T>(task: Task<T>, options: GuardedCallOptions = {}): Promise<T> {
    // Refused here, before opossum, so a refusal costs one error and no events: the fail-fast path.
    if (this.refusesCalls()) {
      this.counts.rejects++;
      return Promise.reject(new CircuitOpenError(this.name, this.retryAfterSeconds()));
    }
    const isFailure = options.isFailure ?? everyErrorIsAFailure;
    const run = () => this.runWithTimeout(task, options.signal).catch((error: unknown) => this.settleError(error, isFailure, options.signal));
    return this.breaker.fire(run).then((result) => (result instanceof NeutralOutcome ? Promise.reject(result.error) : (result as T)));
  }

  /** The caller served a fallback answer because a call through this breaker did not succeed. */
  recordFallback(): void {
    this.counts.fallbacks++;
  }

  /** When the half-open trial is due, while the circuit is open. */
  nextAttemptAt(): number | undefined {
    return this.state === 'open' && this.openedAt !== undefined ? this.openedAt + this.options.resetTimeoutMs : undefined;
  }

  /** Seconds until a retry can reach the upstream: to the trial when open, rounded up, at least 1. */
  retryAfterSeconds(): number {
    const next = this.nextAttemptAt();
    return next === undefined ? 1 : Math.max(1, Math.ceil((next - Date.now()) / 1000));
  }

  snapshot(): CircuitBreakerSnapshot {
    const next = this.nextAttemptAt();
    return {
      name: this.name,
      state: this.state,
      enabled: this.options.enabled,
      failures: this.consecutiveFailures,
      failureThreshold: this.options.failureThreshold,
      ...(this.state === 'open' && this.openedAt !== undefined ? { openedAt: new Date(this.openedAt).toISOString() } : {}),
      ...(next !== undefined ? { nextAttemptAt: new Date(next).toISOString() } : {}),
      stats: { ...this.counts },
    };
  }

  /** Stops the reset timer and aborts calls still in flight, so nothing outlives the app. */
  shutdown(): void {
    for (const abort of this.inFlight) abort(new Error(`Circuit "${this.name}" shut down`));
    this.breaker.shutdown();
  }

  /** opossum's own rule: open, or half-open with the single trial already taken. */
  private refusesCalls(): boolean {
    return !this.breaker.closed && !this.breaker.pendingClose;
  }

  private runWithTimeout<T>(task: Task<T>, callerSignal?: AbortSignal): Promise<T> {
    const controller = new AbortController();
    const signal = callerSignal ? AbortSignal.any([controller.signal, callerSignal]) : controller.signal;
    return new Promise<T>((resolve, reject) => {
      const settle = () => {
        clearTimeout(timer);
        this.inFlight.delete(abort);
      };
      const abort: AbortInFlight = (reason) => {
        settle();
        controller.abort(reason);
        reject(reason);
      };
      const timer = setTimeout(() => abort(new CallTimeoutError(this.name, this.options.timeoutMs)), this.options.timeoutMs);
      this.inFlight.add(abort);
      try {
        task(signal).then(resolve, reject).finally(settle);
      } catch (error) {
        settle();
        reject(error);
      }
    });
  }

  /** Failures go on to opossum as errors; anything else settles as a NeutralOutcome, counted neither way. */
  private settleError(error: unknown, isFailure: (error: unknown) => boolean, callerSignal?: AbortSignal): NeutralOutcome {
    if (error instanceof CallTimeoutError) throw error;
    if (callerSignal?.aborted) return new NeutralOutcome(error);
    let counts = true;
    try {
      counts = isFailure(error);
    } catch {
      // A classifier that throws cannot vouch for the upstream: count it.
    }
    if (counts) throw error;
    return new NeutralOutcome(error);
  }

  private onSuccess(result: unknown): void {
    // A request-specific rejection neither counts as a failure nor proves the upstream healthy.
    if (result instanceof NeutralOutcome) return;
    this.consecutiveFailures = 0;
    this.counts.successes++;
  }

  private onFailure(error: unknown): void {
    this.counts.failures++;
    if (error instanceof CallTimeoutError) this.counts.timeouts++;
    this.consecutiveFailures++;
    // A failed half-open trial re-opens through opossum itself; here only the closed circuit trips.
    if (this.options.enabled && this.breaker.closed && this.consecutiveFailures >= this.options.failureThreshold) this.breaker.open();
  }

  private onTransition(to: CircuitState): void {
    const from = this.lastState;
    this.lastState = to;
    if (to === 'open') this.openedAt = Date.now();
    if (to === 'closed') {
      this.openedAt = undefined;
      this.consecutiveFailures = 0;
    }
    const next = this.nextAttemptAt();
    this.logger.log({
      event: 'circuit_breaker_transition',
      breaker: this.name,
      from,
      to,
      failures: this.consecutiveFailures,
      nextAttemptAt: next === undefined ? null : new Date(next).toISOString(),
    });
  }
}
