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

/** What observers hear: every call outcome, refusal and transition, as it happens. */
export type CircuitBreakerEventType = 'success' | 'failure' | 'timeout' | 'neutral' | 'reject' | 'open' | 'close' | 'half_open';

export interface CircuitBreakerEvent {
  breaker: string;
  type: CircuitBreakerEventType;
  /**
   * How long the upstream call took. Exactly one event per call the breaker ran carries it, and its type is the
   * call's outcome: success, neutral, timeout or failure (a time-out also emits a 'failure' without it).
   */
  durationMs?: number;
}

export type CircuitBreakerListener = (event: CircuitBreakerEvent) => void;

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

/** A call that succeeded, with its duration, so onSuccess can report it. */
class CompletedCall {
  constructor(
    readonly result: unknown,
    readonly durationMs: number,
  ) {}
}

/** A call that ended in an error that is not the upstream's fault: opossum sees it settle, we rethrow it. */
class NeutralOutcome {
  constructor(
    readonly error: unknown,
    readonly durationMs: number,
  ) {}
}

/** A call that failed, with its duration: opossum sees it as the failure, the caller gets `error` back. */
class FailedCall {
  constructor(
    readonly error: unknown,
    readonly durationMs: number,
  ) {}
}

type SettledCall = CompletedCall | NeutralOutcome;

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
  private readonly breaker: Opossum<[() => Promise<SettledCall>], SettledCall>;
  private readonly counts: CircuitBreakerStats = { successes: 0, failures: 0, timeouts: 0, rejects: 0, fallbacks: 0 };
  private readonly inFlight = new Set<AbortInFlight>();
  private readonly listeners = new Set<CircuitBreakerListener>();
  private consecutiveFailures = 0;
  private openedAt?: number;
  private lastState: CircuitState = 'closed';

  constructor(
    readonly name: string,
    private readonly options: CircuitBreakerOptions,
  ) {
    // Always enabled underneath, so stats are kept; `options.enabled: false` only means it never opens.
    this.breaker = new Opossum((run: () => Promise<SettledCall>) => run(), {
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
    this.breaker.on('success', (settled: SettledCall) => this.onSuccess(settled));
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
    // Refused here, before opossum, so a refusal costs one error and no opossum events: the fail-fast path.
    if (this.refusesCalls()) {
      this.counts.rejects++;
      this.emit('reject');
      return Promise.reject(new CircuitOpenError(this.name, this.retryAfterSeconds()));
    }
    const isFailure = options.isFailure ?? everyErrorIsAFailure;
    const run = (): Promise<SettledCall> => {
      const startedAt = performance.now();
      return this.runWithTimeout(task, options.signal).then(
        (result) => new CompletedCall(result, performance.now() - startedAt),
        (error: unknown) => this.settleError(error, isFailure, performance.now() - startedAt, options.signal),
      );
    };
    // The caller gets back exactly what its task threw, whatever its type.
    return this.breaker.fire(run).then(
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
      (settled) => (settled instanceof NeutralOutcome ? Promise.reject(settled.error) : (settled.result as T)),
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
      (error: unknown) => Promise.reject(error instanceof FailedCall ? error.error : error),
    );
  }

  /** Calls `listener` on every event of this breaker until the returned function is called. */
  onEvent(listener: CircuitBreakerListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
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
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the task's own error, as thrown
        reject(error);
      }
    });
  }

  /**
   * Failures go on to opossum as a FailedCall (thrown, so opossum counts them; fire() unwraps it);
   * anything else settles as a NeutralOutcome, counted neither way.
   */
  /* eslint-disable @typescript-eslint/only-throw-error */
  private settleError(
    error: unknown,
    isFailure: (error: unknown) => boolean,
    durationMs: number,
    callerSignal?: AbortSignal,
  ): NeutralOutcome {
    if (error instanceof CallTimeoutError) throw new FailedCall(error, durationMs);
    if (callerSignal?.aborted) return new NeutralOutcome(error, durationMs);
    let counts = true;
    try {
      counts = isFailure(error);
    } catch {
      // A classifier that throws cannot vouch for the upstream: count it.
    }
    if (counts) throw new FailedCall(error, durationMs);
    return new NeutralOutcome(error, durationMs);
  }
  /* eslint-enable @typescript-eslint/only-throw-error */

  private onSuccess(settled: SettledCall): void {
    // A request-specific rejection neither counts as a failure nor proves the upstream healthy.
    if (settled instanceof NeutralOutcome) {
      this.emit('neutral', settled.durationMs);
      return;
    }
    this.consecutiveFailures = 0;
    this.counts.successes++;
    this.emit('success', settled.durationMs);
  }

  private onFailure(failed: unknown): void {
    const { error, durationMs } = failed instanceof FailedCall ? failed : { error: failed, durationMs: undefined };
    const timedOut = error instanceof CallTimeoutError;
    this.counts.failures++;
    if (timedOut) this.counts.timeouts++;
    this.consecutiveFailures++;
    // The time-out event carries the duration, so each call is timed once under its most specific outcome.
    this.emit('failure', timedOut ? undefined : durationMs);
    if (timedOut) this.emit('timeout', durationMs);
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
    this.emit(to === 'closed' ? 'close' : to);
  }

  /** Free when nobody listens, so the fail-fast path stays one counter and one error. */
  private emit(type: CircuitBreakerEventType, durationMs?: number): void {
    if (this.listeners.size === 0) return;
    const event: CircuitBreakerEvent = durationMs === undefined ? { breaker: this.name, type } : { breaker: this.name, type, durationMs };
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        // An observer's bug must not change a call's outcome or the breaker's state.
        this.logger.warn(`A listener of circuit "${this.name}" threw: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }
}
