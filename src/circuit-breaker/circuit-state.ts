import { FailureRateWindow, type FailureRatePolicy } from './failure-rate-window.js';

export type CircuitState = 'closed' | 'open' | 'half_open';

/**
 * What the state machine is configured with; times in milliseconds, on the clock the caller passes (monotonic for a
 * replica's own circuit, Redis' for the fleet's). A disabled breaker (CIRCUIT_BREAKER_ENABLED=false) never asks its
 * circuit anything, so the circuit has no such setting.
 */
export interface CircuitPolicy extends FailureRatePolicy {
  /** Consecutive failures that open the circuit. */
  failureThreshold: number;
  /** How long the circuit stays open before one half-open trial call. */
  resetTimeoutMs: number;
  /** The longest the circuit stays open, whatever a wait hint or the backoff says. */
  maxOpenMs: number;
  /** The open period is multiplied by this after each failed trial (1 = fixed), with ±10 % jitter above 1. */
  resetBackoff: number;
}

/** Why the circuit last counted a failure: shown in the health entry so an operator sees what opened it. */
export interface FailureCause {
  /** The failure's kind: `timeout`, `network`, `http`, `protocol`… */
  kind: string;
  /** The upstream's HTTP status, when it answered. */
  status?: number;
  /** On the circuit's clock (the caller converts it for display). */
  at: number;
}

/** How a call the circuit let through ended, as far as the circuit is concerned. */
export type CallOutcome =
  | { kind: 'success' }
  /** The upstream answered but rejected this request (a bad prompt): counts neither way; as a trial, it closes. */
  | { kind: 'rejected' }
  /** The caller went away before the end: proves nothing; as a trial, it frees the trial. */
  | { kind: 'abandoned' }
  /**
   * The upstream is unwell. `opensAtOnce`: it fails every request alike (credentials, credits, model), so the
   * threshold is not waited for; `holdOpenMs`: the upstream asked us to wait that long (and it opens at once).
   */
  | { kind: 'failure'; cause: FailureCause; opensAtOnce?: boolean; holdOpenMs?: number };

/**
 * A call's admission: the generation it started in, and whether it is the half-open trial. An outcome from an
 * earlier generation (the circuit changed state since the call started) never changes the state.
 */
export interface Ticket {
  readonly generation: number;
  readonly trial: boolean;
}

/**
 * Told every state change, with when the trial is due when the new state is open; `observed` when another replica
 * of the fleet made the change and this one only learned of it.
 */
export type TransitionListener = (from: CircuitState, to: CircuitState, nextAttemptAt: number | undefined, observed?: boolean) => void;

/** Whose circuit decides: the fleet's, shared through Redis, or this replica's own. */
export type CircuitScope = 'fleet' | 'replica';

/**
 * What a breaker asks of its circuit; times are this replica's monotonic clock (monotonic-clock.ts). CircuitStateMachine is the
 * replica's own circuit, FleetCircuit (fleet/fleet-circuit.ts) the fleet's.
 */
export interface Circuit {
  readonly scope: CircuitScope;
  /** Consecutive failures since the last success. */
  readonly failures: number;
  readonly cause: FailureCause | undefined;
  state(now: number): CircuitState;
  openWindow(now: number): { openedAt: number; nextAttemptAt: number } | undefined;
  /**
   * A ticket to run a call, or undefined when the circuit refuses it. Synchronous, except when the answer needs
   * another party (the fleet's half-open trial lease): then a promise of the same.
   */
  admit(now: number): Ticket | undefined | Promise<Ticket | undefined>;
  /**
   * Records how an admitted call ended. A promise when the circuit tells another party (the fleet) an outcome that
   * may change the state, a failure or a trial's end: it resolves once the state is known again, never rejects.
   */
  settle(ticket: Ticket, outcome: CallOutcome, now: number): void | Promise<void>;
  shutdown(now: number): void;
}

/** Where a circuit stands, to start a replica's own circuit from the fleet's last known state. */
export interface CircuitSeed {
  state: CircuitState;
  failures: number;
  failedTrials: number;
  /** While open: when it opened and when its trial is due (this replica's clock). */
  openedAt?: number;
  openUntil?: number;
  cause?: FailureCause;
}

const JITTER = 0.1;

/**
 * The circuit's state machine, with the clock passed in: closed → open after the threshold of consecutive
 * failures (or at once for a failure that hits every request, or an upstream wait hint); open → half-open when
 * the open period has passed (observed lazily: no timer); half-open admits exactly one trial, whose outcome
 * closes or re-opens it. Every state change starts a new generation.
 */
export class CircuitStateMachine implements Circuit {
  readonly scope = 'replica';
  private phase: CircuitState = 'closed';
  private generation = 0;
  private consecutiveFailures = 0;
  private failedTrials = 0;
  private trialInFlight = false;
  private openedAt?: number;
  private openUntil?: number;
  private lastFailure?: FailureCause;
  /** The closed state's ticket, shared by every call of one generation: admission allocates nothing. */
  private closedTicket: Ticket = { generation: 0, trial: false };
  /** The calls of the failure-rate window, while closed. */
  private readonly window: FailureRateWindow;

  constructor(
    private readonly policy: CircuitPolicy,
    private readonly onTransition: TransitionListener = () => undefined,
    private readonly random: () => number = Math.random,
  ) {
    this.window = new FailureRateWindow(policy);
  }

  /** The state at `now`: an open circuit whose period has passed is half-open. */
  state(now: number): CircuitState {
    this.refresh(now);
    return this.phase;
  }

  get failures(): number {
    return this.consecutiveFailures;
  }

  get cause(): FailureCause | undefined {
    return this.lastFailure;
  }

  /** When the circuit opened and when its trial is due, while it is open. */
  openWindow(now: number): { openedAt: number; nextAttemptAt: number } | undefined {
    this.refresh(now);
    return this.phase === 'open' && this.openedAt !== undefined && this.openUntil !== undefined
      ? { openedAt: this.openedAt, nextAttemptAt: this.openUntil }
      : undefined;
  }

  /** A ticket to run a call, or undefined when the circuit refuses it (open, or the trial already taken). */
  admit(now: number): Ticket | undefined {
    if (this.phase === 'closed') return this.closedTicket;
    this.refresh(now);
    if (this.phase !== 'half_open' || this.trialInFlight) return undefined;
    this.trialInFlight = true;
    return { generation: this.generation, trial: true };
  }

  /** Records how an admitted call ended. */
  settle(ticket: Ticket, outcome: CallOutcome, now: number): void {
    this.refresh(now);
    if (ticket.generation !== this.generation) return;
    if (outcome.kind === 'failure') this.lastFailure = outcome.cause;
    if (ticket.trial) this.settleTrial(outcome, now);
    else this.settleClosed(outcome, now);
  }

  /**
   * Takes up `seed`'s state without telling the listener (nothing changed for callers: the fleet's circuit was in
   * that state). A seed that is half-open, or open with its period passed, is half-open with its trial free.
   */
  seed(seed: CircuitSeed): void {
    this.trialInFlight = false;
    this.consecutiveFailures = seed.failures;
    this.failedTrials = seed.failedTrials;
    this.lastFailure = seed.cause;
    const open = seed.state !== 'closed';
    this.phase = open ? 'open' : 'closed';
    this.openedAt = open ? (seed.openedAt ?? seed.openUntil) : undefined;
    this.openUntil = open ? (seed.openUntil ?? 0) : undefined;
    this.startGeneration();
  }

  /** Refuses every call from now on (the application is shutting down). */
  shutdown(now: number): void {
    this.trialInFlight = false;
    this.openedAt = now;
    this.openUntil = Number.POSITIVE_INFINITY;
    this.phase = 'open';
    this.startGeneration();
  }

  private settleClosed(outcome: CallOutcome, now: number): void {
    if (outcome.kind === 'success') {
      this.consecutiveFailures = 0;
      this.window.record(now, false);
    }
    if (outcome.kind !== 'failure') return;
    this.consecutiveFailures++;
    const rateTrips = this.window.record(now, true);
    const opens =
      outcome.opensAtOnce || outcome.holdOpenMs !== undefined || this.consecutiveFailures >= this.policy.failureThreshold || rateTrips;
    if (opens) this.open(now, this.policy.resetTimeoutMs, outcome.holdOpenMs);
  }

  private settleTrial(outcome: CallOutcome, now: number): void {
    this.trialInFlight = false;
    if (outcome.kind === 'abandoned') return;
    if (outcome.kind !== 'failure') {
      this.consecutiveFailures = 0;
      this.failedTrials = 0;
      this.openedAt = undefined;
      this.openUntil = undefined;
      this.moveTo('closed');
      return;
    }
    this.consecutiveFailures++;
    this.failedTrials++;
    this.open(now, this.backedOffPeriod(), outcome.holdOpenMs);
  }

  /**
   * The reset period grown by the backoff for each failed trial, with ±10 % jitter so replicas do not probe in
   * step; at the cap the jitter only shortens it, or every replica would wait exactly the cap again.
   */
  private backedOffPeriod(): number {
    const { resetTimeoutMs, resetBackoff, maxOpenMs } = this.policy;
    if (resetBackoff <= 1) return resetTimeoutMs;
    const grown = resetTimeoutMs * resetBackoff ** this.failedTrials;
    if (grown >= maxOpenMs) return maxOpenMs * (1 - JITTER * this.random());
    return Math.min(maxOpenMs, grown * (1 - JITTER + 2 * JITTER * this.random()));
  }

  private open(now: number, periodMs: number, holdOpenMs = 0): void {
    this.openedAt = now;
    this.openUntil = now + Math.min(this.policy.maxOpenMs, Math.max(periodMs, holdOpenMs));
    this.moveTo('open');
  }

  /** Makes a due half-open state real, so its generation starts before the trial is admitted. */
  private refresh(now: number): void {
    if (this.phase === 'open' && this.openUntil !== undefined && now >= this.openUntil) this.moveTo('half_open');
  }

  private moveTo(to: CircuitState): void {
    const from = this.phase;
    this.phase = to;
    this.startGeneration();
    this.onTransition(from, to, to === 'open' ? this.openUntil : undefined);
  }

  private startGeneration(): void {
    this.generation++;
    this.window.clear();
    this.closedTicket = { generation: this.generation, trial: false };
  }
}
