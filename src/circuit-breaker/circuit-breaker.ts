import { Logger } from '@nestjs/common';
import { abortReason, raceDeadline } from '../common/deadline.js';
import { errorMessage } from '../logging/error-message.js';
import { Bulkhead } from './bulkhead.js';
import type { FailureRatePolicy } from './failure-rate-window.js';
import {
  BreakerShutdownError,
  BulkheadFullError,
  CallTimeoutError,
  CircuitOpenError,
  StreamNotConsumedError,
  StreamStalledError,
} from './circuit-breaker.errors.js';
import {
  type CallOutcome,
  type Circuit,
  type CircuitScope,
  type CircuitState,
  CircuitStateMachine,
  type Ticket,
  type TransitionListener,
} from './circuit-state.js';
import { GuardedStream, GuardedStreamCall, type StreamTask } from './guarded-stream.js';
import { monotonicNow, toWallClock, wallClockOffset } from './monotonic-clock.js';

export type { CircuitScope, CircuitState } from './circuit-state.js';

/** Builds a breaker's circuit: this replica's own by default, the fleet's when shared (fleet/shared-circuit-store.ts). */
export type CircuitFactory = (
  breaker: string,
  options: CircuitBreakerOptions,
  onTransition: TransitionListener,
  random: () => number,
) => Circuit;

const ownCircuit: CircuitFactory = (_breaker, options, onTransition, random) => new CircuitStateMachine(options, onTransition, random);

export interface CircuitBreakerOptions extends FailureRatePolicy {
  /**
   * false: calls go straight through (no fast-fail) whatever the circuit says; the circuit is never asked for a trial
   * and never told an outcome. The time-out and the bulkhead still apply, stats are still kept.
   */
  enabled: boolean;
  /** Consecutive failures that open the circuit. */
  failureThreshold: number;
  /** Per-call limit; the call's AbortSignal is aborted when it passes. */
  timeoutMs: number;
  /** How long the circuit stays open before one half-open trial call. */
  resetTimeoutMs: number;
  /** The longest open period (whatever an upstream's wait hint says), and the cap on every Retry-After we send. */
  maxOpenMs: number;
  /** Multiplier of the open period after each failed trial (1 = fixed). */
  resetBackoff: number;
  /** Calls in flight at most; past it a call is refused at once and counts neither way. */
  maxConcurrent: number;
  /** A streamed call: the longest gap between two items after the first (the first is bounded by `timeoutMs`). */
  streamIdleTimeoutMs: number;
}

/**
 * What an error says about the upstream. Not counted: a request-specific rejection (this prompt is bad: as a trial it
 * closes, the upstream answered), and `local`, this replica's own trouble (out of file descriptors, sockets or memory:
 * the upstream proved nothing, so as a trial it frees the trial).
 * Counted: a failure toward the threshold; `opensAtOnce` for one that hits every request alike (credentials,
 * credits, an unknown model); `holdOpenMs` when the upstream asked us to wait (429/503 with a wait hint).
 */
export type FailureVerdict =
  { counts: false; local?: boolean } | { counts: true; kind?: string; status?: number; opensAtOnce?: boolean; holdOpenMs?: number };

export interface GuardedCallOptions {
  /** Classifies the errors the task throws; every error is a failure when omitted. */
  classify?: (error: unknown) => FailureVerdict;
  /** The caller's own signal (e.g. its client went away); aborting it aborts the call, which then does not count. */
  signal?: AbortSignal;
}

export interface CircuitBreakerStats {
  successes: number;
  failures: number;
  timeouts: number;
  /** Calls refused because the circuit was open or its trial was taken. */
  rejects: number;
  /** Calls refused because `maxConcurrent` calls were in flight. */
  overloaded: number;
  fallbacks: number;
}

/** What observers hear: every call outcome, refusal and transition, as it happens. */
export type CircuitBreakerEventType =
  'success' | 'failure' | 'timeout' | 'neutral' | 'reject' | 'overloaded' | 'open' | 'close' | 'half_open';

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
  /** 'fleet' while the circuit is shared by the replicas through Redis, 'replica' while it is this replica's own. */
  scope: CircuitScope;
  enabled: boolean;
  /** Consecutive failures since the last success. */
  failures: number;
  failureThreshold: number;
  openedAt?: string;
  nextAttemptAt?: string;
  /** The last failure counted: what opened the circuit, when it is open. */
  lastFailure?: { kind: string; status?: number; at: string };
  /** Calls in flight now, and the bulkhead's capacity. */
  inFlight: number;
  maxConcurrent: number;
  /** Counts since start. */
  stats: CircuitBreakerStats;
}

type Admission = Ticket | CircuitOpenError | BulkheadFullError;
type Task<T> = (signal: AbortSignal) => Promise<T>;

/** Ends a call still running: aborts its signal with `reason` and rejects its promise with it. */
type AbortInFlight = (reason: Error) => void;

const everyErrorIsAFailure = (): FailureVerdict => ({ counts: true });

/** The ticket of a disabled breaker's calls: the circuit issued none and is told nothing. */
const UNGUARDED: Ticket = Object.freeze({ generation: -1, trial: false });

/**
 * One named breaker, composed of small parts: the state machine (circuit-state.ts) decides whether a call may
 * run, the bulkhead bounds how many run at once, each call gets its own AbortController aborted at the time-out
 * (common/deadline.ts), and a streamed call is a GuardedStreamCall (guarded-stream.ts). A call's outcome is reported
 * to the state machine with the generation it started in, so a call that started before the circuit last changed
 * state never changes it.
 */
export class CircuitBreaker {
  private readonly logger = new Logger(CircuitBreaker.name);
  private readonly machine: Circuit;
  private readonly bulkhead: Bulkhead;
  private readonly counts: CircuitBreakerStats = { successes: 0, failures: 0, timeouts: 0, rejects: 0, overloaded: 0, fallbacks: 0 };
  private readonly inFlight = new Set<AbortInFlight>();
  private readonly listeners = new Set<CircuitBreakerListener>();
  private stopped = false;

  constructor(
    readonly name: string,
    private readonly options: CircuitBreakerOptions,
    random: () => number = Math.random,
    createCircuit: CircuitFactory = ownCircuit,
  ) {
    this.machine = createCircuit(
      name,
      options,
      (from, to, nextAttemptAt, observed) => this.onTransition(from, to, nextAttemptAt, observed),
      random,
    );
    this.bulkhead = new Bulkhead(options.maxConcurrent);
  }

  get state(): CircuitState {
    return this.machine.state(monotonicNow());
  }

  get scope(): CircuitScope {
    return this.machine.scope;
  }

  /** Runs `task` behind the breaker; rejects at once with CircuitOpenError or BulkheadFullError when it refuses. */
  fire<T>(task: Task<T>, options: GuardedCallOptions = {}): Promise<T> {
    // A caller already gone: nothing to run, no trial to take, nothing to count.
    if (options.signal?.aborted) return Promise.reject(abortReason(options.signal));
    const admitted = this.admit();
    if (admitted instanceof Promise) {
      return admitted.then((ticket) =>
        ticket instanceof Error ? Promise.reject(ticket) : (this.unlessGone(ticket, options.signal) ?? this.run(task, ticket, options)),
      );
    }
    return admitted instanceof Error ? Promise.reject(admitted) : this.run(task, admitted, options);
  }

  /**
   * A caller that left while its admission was being decided (the fleet asked for the trial): nothing runs, the
   * ticket is given back (a trial is freed), nothing counts.
   */
  private unlessGone(ticket: Ticket, signal: AbortSignal | undefined): Promise<never> | undefined {
    if (!signal?.aborted) return undefined;
    this.bulkhead.release();
    void this.machine.settle(ticket, { kind: 'abandoned' }, monotonicNow());
    return Promise.reject(abortReason(signal));
  }

  /**
   * Runs a streamed `task` behind the breaker. Resolves once the first item has arrived, with the whole stream (that
   * first item included): refusals, failures and the time-out (`timeoutMs`, the time to the first item) all come
   * before anything was streamed, as rejections, so the caller can still fall back. Each later gap is bounded by
   * `streamIdleTimeoutMs` (StreamStalledError). The stream holds its bulkhead slot until it ends, and its outcome
   * is recorded then: success when it completes, the classified failure when it fails or stalls, and neither when
   * the caller's signal aborts or the consumer stops reading early. Any early end aborts the task's signal.
   */
  async fireStream<T>(task: StreamTask<T>, options: GuardedCallOptions = {}): Promise<GuardedStream<T>> {
    if (options.signal?.aborted) throw abortReason(options.signal);
    const admission = this.admit();
    const admitted = admission instanceof Promise ? await admission : admission;
    if (admitted instanceof Error) throw admitted;
    if (admission instanceof Promise) await this.unlessGone(admitted, options.signal);
    const call = new GuardedStreamCall<T>(this.name, this.options, options.signal, (abort) => this.trackInFlight(abort));
    const finish = (outcome: CallOutcome): void => {
      call.end(outcome.kind === 'success');
      this.bulkhead.release();
      void this.record(admitted, outcome, call.durationMs);
    };
    let first: IteratorResult<T>;
    try {
      first = await call.start(task);
    } catch (error) {
      finish(this.outcomeOf(error, options));
      throw error;
    }
    return new GuardedStream(
      call,
      first,
      (outcome) => finish(outcome ?? { kind: 'abandoned' }),
      (error) => this.outcomeOf(error, options),
    );
  }

  /**
   * A ticket, or the error refusing the call (counted and told to observers). Synchronous but when the circuit has
   * to ask the fleet (for its half-open trial).
   */
  private admit(): Admission | Promise<Admission> {
    // Disabled: no fast-fail whatever the circuit says, no trial taken; only the bulkhead bounds the calls.
    // After shutdown nothing starts: the circuit refuses, and a disabled breaker (which does not ask it) too.
    if (!this.options.enabled) return this.stopped ? this.admitted(undefined, 0) : this.admitted(UNGUARDED, 0);
    const now = monotonicNow();
    // Decided before anything else, so a refusal costs one check, one counter and one stackless error.
    const ticket = this.machine.admit(now);
    return ticket instanceof Promise ? ticket.then((asked) => this.admitted(asked, monotonicNow())) : this.admitted(ticket, now);
  }

  private admitted(ticket: Ticket | undefined, now: number): Admission {
    if (ticket === undefined) {
      this.counts.rejects++;
      this.emit('reject');
      return new CircuitOpenError(this.name, this.retryAfterSeconds());
    }
    if (!this.bulkhead.tryAcquire()) {
      if (ticket !== UNGUARDED) void this.machine.settle(ticket, { kind: 'abandoned' }, now);
      this.counts.overloaded++;
      this.emit('overloaded');
      return new BulkheadFullError(this.name, this.bulkhead.capacity);
    }
    return ticket;
  }

  private trackInFlight(abort: AbortInFlight): () => void {
    this.inFlight.add(abort);
    return () => this.inFlight.delete(abort);
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
    return nextAttemptOf(this.machine.openWindow(monotonicNow()), wallClockOffset());
  }

  /**
   * Seconds until a retry can reach the upstream: to the trial while open (rounded up, at least 1); otherwise the
   * upstream's own hint, or 1. Never more than the longest open period.
   */
  retryAfterSeconds(upstreamHintSeconds?: number): number {
    const next = this.nextAttemptAt();
    const seconds = next !== undefined ? (next - Date.now()) / 1000 : (upstreamHintSeconds ?? 1);
    return Math.min(Math.max(1, Math.ceil(this.options.maxOpenMs / 1000)), Math.max(1, Math.ceil(seconds)));
  }

  snapshot(): CircuitBreakerSnapshot {
    const now = monotonicNow();
    // One reading for every time shown: openedAt and nextAttemptAt stay exactly one open period apart.
    const offset = wallClockOffset();
    const window = this.machine.openWindow(now);
    const next = nextAttemptOf(window, offset);
    const cause = this.machine.cause;
    return {
      name: this.name,
      state: this.machine.state(now),
      scope: this.machine.scope,
      enabled: this.options.enabled,
      failures: this.machine.failures,
      failureThreshold: this.options.failureThreshold,
      ...(window ? { openedAt: iso(toWallClock(window.openedAt, offset)) } : {}),
      ...(next !== undefined ? { nextAttemptAt: iso(next) } : {}),
      ...(cause
        ? {
            lastFailure: {
              kind: cause.kind,
              ...(cause.status !== undefined ? { status: cause.status } : {}),
              at: iso(toWallClock(cause.at, offset)),
            },
          }
        : {}),
      inFlight: this.bulkhead.inFlight,
      maxConcurrent: this.bulkhead.capacity,
      stats: { ...this.counts },
    };
  }

  /** Refuses every call from now on and ends the calls still in flight, so nothing outlives the app. */
  shutdown(): void {
    this.stopped = true;
    this.machine.shutdown(monotonicNow());
    for (const abort of this.inFlight) abort(new BreakerShutdownError(this.name));
  }

  private async run<T>(task: Task<T>, ticket: Ticket, options: GuardedCallOptions): Promise<T> {
    const startedAt = performance.now();
    let result: T;
    try {
      result = await this.runWithTimeout(task, options.signal);
    } catch (error) {
      this.bulkhead.release();
      // A failure told to the fleet is answered before the caller hears it, so the caller sees the circuit it left.
      const recorded = this.record(ticket, this.outcomeOf(error, options), performance.now() - startedAt);
      if (recorded) await recorded;
      throw error;
    }
    this.bulkhead.release();
    const recorded = this.record(ticket, { kind: 'success' }, performance.now() - startedAt);
    if (recorded) await recorded;
    return result;
  }

  /** The task under its own controller: aborted at the time-out or shutdown (rejecting at once) and when the caller's signal aborts. */
  private runWithTimeout<T>(task: Task<T>, callerSignal?: AbortSignal): Promise<T> {
    const controller = new AbortController();
    const { timeoutMs } = this.options;
    return raceDeadline(
      () => task(controller.signal),
      timeoutMs,
      () => new CallTimeoutError(this.name, timeoutMs),
      {
        controller,
        forwardFrom: callerSignal,
        running: this.inFlight,
      },
    );
  }

  /** What the call's error means for the circuit. */
  private outcomeOf(error: unknown, options: GuardedCallOptions): CallOutcome {
    const at = monotonicNow();
    if (error instanceof StreamStalledError) return { kind: 'failure', cause: { kind: 'timeout', at } };
    // First: a caller that left proves nothing, even if the task then ran into the time-out.
    if (options.signal?.aborted || error instanceof BreakerShutdownError || error instanceof StreamNotConsumedError)
      return { kind: 'abandoned' };
    if (error instanceof CallTimeoutError) return { kind: 'failure', cause: { kind: 'timeout', at } };
    let verdict: FailureVerdict;
    try {
      verdict = (options.classify ?? everyErrorIsAFailure)(error);
    } catch {
      // A classifier that throws cannot vouch for the upstream: count it.
      verdict = { counts: true };
    }
    if (!verdict.counts) return verdict.local ? { kind: 'abandoned' } : { kind: 'rejected' };
    return {
      kind: 'failure',
      cause: { kind: verdict.kind ?? 'error', ...(verdict.status !== undefined ? { status: verdict.status } : {}), at },
      ...(verdict.opensAtOnce ? { opensAtOnce: true } : {}),
      ...(verdict.holdOpenMs !== undefined ? { holdOpenMs: verdict.holdOpenMs } : {}),
    };
  }

  /** Counts the outcome, tells observers (the outcome's event carries the duration), then the state machine. */
  private record(ticket: Ticket, outcome: CallOutcome, durationMs: number): void | Promise<void> {
    if (outcome.kind === 'success') {
      this.counts.successes++;
      this.emit('success', durationMs);
    } else if (outcome.kind === 'failure') {
      const timedOut = outcome.cause.kind === 'timeout';
      this.counts.failures++;
      if (timedOut) this.counts.timeouts++;
      this.emit('failure', timedOut ? undefined : durationMs);
      if (timedOut) this.emit('timeout', durationMs);
    } else {
      this.emit('neutral', durationMs);
    }
    return ticket === UNGUARDED ? undefined : this.machine.settle(ticket, outcome, monotonicNow());
  }

  /**
   * Logs a transition this replica made, and tells observers; one it only observed (another replica of the fleet
   * made it, and logged it) is logged at debug, and not counted again.
   */
  private onTransition(from: CircuitState, to: CircuitState, nextAttemptAt: number | undefined, observed = false): void {
    const cause = this.machine.cause;
    const entry = {
      event: 'circuit_breaker_transition',
      breaker: this.name,
      from,
      to,
      scope: this.machine.scope,
      failures: this.machine.failures,
      nextAttemptAt: nextAttemptAt === undefined ? null : iso(toWallClock(nextAttemptAt)),
      ...(to === 'open' && cause ? { cause: { kind: cause.kind, status: cause.status ?? null } } : {}),
    };
    if (observed) {
      this.logger.debug({ ...entry, observed: true });
      return;
    }
    this.logger.log(entry);
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
        this.logger.warn(`A listener of circuit "${this.name}" threw: ${errorMessage(error)}`);
      }
    }
  }
}

/** When the half-open trial is due, on the wall clock, for an open window. */
function nextAttemptOf(window: { nextAttemptAt: number } | undefined, offset: number): number | undefined {
  return window && Number.isFinite(window.nextAttemptAt) ? toWallClock(window.nextAttemptAt, offset) : undefined;
}

function iso(epochMs: number): string {
  return new Date(epochMs).toISOString();
}
