import { Logger } from '@nestjs/common';
import { errorMessage } from '../../logging/error-message.js';
import {
  type CallOutcome,
  type Circuit,
  type CircuitPolicy,
  type CircuitScope,
  type CircuitSeed,
  type CircuitState,
  CircuitStateMachine,
  type FailureCause,
  type Ticket,
  type TransitionListener,
} from '../circuit-state.js';
import { toWallClock } from '../monotonic-clock.js';
import type { CircuitScript, FleetState, ScriptCause, TrialArguments } from './circuit-codec.js';
import { CIRCUIT_SCRIPTS } from './circuit-scripts.js';

/** What a fleet circuit needs from the store that links it to Redis (SharedCircuitStore). */
export interface FleetLink {
  /** This replica's id: the `by` of the changes it makes. */
  readonly replicaId: string;
  /** This replica's clock, the one its breaker passes (monotonic: monotonic-clock.ts), unless a test drives time. */
  localNow(): number;
  /**
   * Runs one of the circuit's scripts on Redis (within a deadline) with its named arguments: the state it left, or
   * undefined when it changed nothing and said so with an empty reply. Rejects on any Redis trouble or a bad reply.
   */
  run<A extends object>(script: CircuitScript<A>, breaker: string, args: NoInfer<A>): Promise<FleetState | undefined>;
}

export interface FleetCircuitPolicy extends CircuitPolicy {
  /** How long the half-open trial's lease holds: a little past the breaker's call time-out. */
  leaseMs: number;
  /**
   * While this replica's trial runs, its lease is renewed (to `leaseMs` from then) this often, so a trial longer than
   * the lease (a long stream) stays the only one; a replica that dies stops renewing and the lease runs out. 0: never.
   */
  leaseRenewMs: number;
}

/** A ticket the fleet issued; `token` is the trial's lease. */
interface FleetTicket extends Ticket {
  readonly fleet: true;
  readonly token?: string;
}

/** The trial script's arguments that free a lease by its token alone (generation -1), whatever it was granted for. */
const releaseArguments = (token: string): TrialArguments => ({ generation: -1, token, outcome: 'abandoned' });

/** A failure's cause as the scripts take it: its time is Redis' clock when recorded. */
const scriptCause = ({ kind, status }: FailureCause): ScriptCause => ({ kind, status });

const isFleetTicket = (ticket: Ticket): ticket is FleetTicket => (ticket as Partial<FleetTicket>).fleet === true;

/**
 * One breaker's circuit shared by every replica through Redis (the scripts in circuit-scripts.ts hold the rules).
 * This replica follows a mirror of the fleet's state, kept current by each script's reply and by the changes
 * published on the circuit's channel, so admission is local: closed admits, open refuses, with no Redis round trip.
 * Redis is told each outcome (a success off the request's path: the script reads one field when there is no run of
 * failures to end), and asked, once per due trial and replica, for the trial's lease (renewed while the trial runs).
 * Times from Redis are on Redis' clock; the mirror converts them with the offset measured at each reply.
 *
 * While Redis is unavailable (a script failed or missed its deadline, or the store saw the connection go), the
 * replica runs its own CircuitStateMachine, seeded from the fleet's last state; it joins again when Redis is back,
 * re-opening the fleet's circuit if its own opened meanwhile. Redis trouble never counts as a model failure.
 */
export class FleetCircuit implements Circuit {
  private readonly logger = new Logger(FleetCircuit.name);
  private readonly local: CircuitStateMachine;
  private mirror?: FleetState;
  private joined = false;
  private joining = false;
  private everJoined = false;
  private stopped = false;
  /** Redis' clock minus this replica's. */
  private offset = 0;
  private acquiring = false;
  private leases = 0;
  /** Outcomes told to the fleet and not yet answered. */
  private readonly reports = new Set<Promise<void>>();
  /** The newest change heard while not joined: applied after the join's reply if newer than it. */
  private heard?: FleetState;
  private closedTicket: FleetTicket = { generation: 0, trial: false, fleet: true };
  /** The trial this replica holds the fleet's lease for, until its outcome is told. */
  private heldTrial?: FleetTicket;
  /** Renews the held trial's lease while it runs. */
  private leaseKeeper?: NodeJS.Timeout;
  /** Leases asked for whose reply missed its deadline: granted, perhaps; released once Redis answers again. */
  private readonly unheardLeases: string[] = [];
  /** This replica's own circuit opened on its own while out of the fleet (not merely seeded open from it). */
  private openedOnItsOwn = false;

  constructor(
    readonly breaker: string,
    private readonly policy: FleetCircuitPolicy,
    private readonly link: FleetLink,
    private readonly onTransition: TransitionListener = () => undefined,
    private readonly random: () => number = Math.random,
  ) {
    // Its own circuit's transitions count only while it is in charge: out of the fleet.
    this.local = new CircuitStateMachine(
      policy,
      (from, to, nextAttemptAt) => {
        if (this.joined) return;
        if (to === 'open') this.openedOnItsOwn = true;
        if (to === 'closed') this.openedOnItsOwn = false;
        this.onTransition(from, to, nextAttemptAt);
      },
      random,
    );
  }

  get scope(): CircuitScope {
    return this.joined ? 'fleet' : 'replica';
  }

  /** The version of the fleet's state this replica follows; undefined while it is out of the fleet. */
  get version(): number | undefined {
    return this.joined ? this.mirror!.version : undefined;
  }

  get failures(): number {
    return this.joined ? this.mirror!.failures : this.local.failures;
  }

  get cause(): FailureCause | undefined {
    if (!this.joined) return this.local.cause;
    const cause = this.mirror!.cause;
    return cause && { ...cause, at: cause.at - this.offset };
  }

  state(now: number): CircuitState {
    if (!this.joined) return this.local.state(now);
    const { phase, openUntil } = this.mirror!;
    return phase === 'open' && now + this.offset >= openUntil ? 'half_open' : phase;
  }

  openWindow(now: number): { openedAt: number; nextAttemptAt: number } | undefined {
    if (!this.joined) return this.local.openWindow(now);
    const { phase, openedAt, openUntil } = this.mirror!;
    if (phase !== 'open' || now + this.offset >= openUntil) return undefined;
    return { openedAt: openedAt - this.offset, nextAttemptAt: openUntil - this.offset };
  }

  admit(now: number): Ticket | undefined | Promise<Ticket | undefined> {
    if (!this.joined) return this.stopped ? undefined : this.local.admit(now);
    const mirror = this.mirror!;
    if (mirror.phase === 'closed') return this.closedTicket;
    const fleetNow = now + this.offset;
    if (mirror.phase === 'open' && fleetNow < mirror.openUntil) return undefined;
    if (mirror.phase === 'half_open' && mirror.leased && fleetNow < mirror.leaseUntil) return undefined;
    // The trial looks free: one request of this replica asks the fleet for it; the others refuse meanwhile.
    if (this.acquiring) return undefined;
    return this.acquire(now);
  }

  settle(ticket: Ticket, outcome: CallOutcome, now: number): void | Promise<void> {
    if (!isFleetTicket(ticket)) {
      this.local.settle(ticket, outcome, now);
      return;
    }
    if (ticket.trial && this.heldTrial === ticket) {
      this.release();
      // Ended while out of the fleet: its lease is given back once Redis answers again.
      if (!this.joined) this.unheardLeases.push(ticket.token!);
    }
    // A call the fleet admitted that ends while this replica is out of the fleet counts nowhere.
    if (!this.joined) return;
    const { generation } = ticket;
    const { failureThreshold, resetTimeoutMs, maxOpenMs, resetBackoff, failureRate, windowMs, minCalls } = this.policy;
    if (ticket.trial) {
      const trial = { generation, token: ticket.token! };
      if (outcome.kind !== 'failure') return this.report(CIRCUIT_SCRIPTS.trial, { ...trial, outcome: outcome.kind });
      return this.report(CIRCUIT_SCRIPTS.trial, {
        ...trial,
        outcome: 'failure',
        resetTimeoutMs,
        maxOpenMs,
        resetBackoff,
        random: this.random(),
        holdOpenMs: outcome.holdOpenMs,
        cause: scriptCause(outcome.cause),
      });
    } else if (outcome.kind === 'failure') {
      return this.report(CIRCUIT_SCRIPTS.failure, {
        generation,
        failureThreshold,
        resetTimeoutMs,
        maxOpenMs,
        opensAtOnce: outcome.opensAtOnce === true,
        holdOpenMs: outcome.holdOpenMs,
        cause: scriptCause(outcome.cause),
        failureRate,
        windowMs,
        minCalls,
      });
    } else if (outcome.kind === 'success') {
      // Every success is told, not only those after a failure this replica has heard of: a failure another replica
      // (or this one) reported a moment ago may not have reached this mirror yet, and the run it started must end
      // here. Off the request's path; Redis reads one field when there is no run to end.
      void this.report(CIRCUIT_SCRIPTS.success, { generation, failureRate, windowMs });
    }
  }

  /** Resolves once every outcome this replica has told the fleet so far has been recorded (or Redis failed). */
  async flush(): Promise<void> {
    await Promise.all(this.reports);
  }

  shutdown(now: number): void {
    // This replica stops; the fleet's circuit is not this replica's to open. A trial it holds is given back at once
    // (its call is being ended), or the fleet would wait for the lease to run out.
    const held = this.heldTrial;
    if (held && this.joined) void this.settle(held, { kind: 'abandoned' }, now);
    this.release();
    this.stopped = true;
    this.joined = false;
    this.local.shutdown(now);
  }

  /** A change published on the circuit's channel. */
  hear(state: FleetState): void {
    if (this.joined) this.apply(state);
    else if (!this.heard || state.version > this.heard.version) this.heard = state;
  }

  /**
   * Joins the fleet's circuit (at start, and when Redis is back): a replica whose own circuit is open re-opens a
   * closed fleet circuit for what is left of its period; then it follows the fleet's state. Resolves false (and
   * stays on its own circuit) when Redis fails.
   */
  async join(): Promise<boolean> {
    if (this.stopped || this.joined || this.joining) return this.joined;
    this.joining = true;
    this.heard = undefined;
    const now = this.link.localNow();
    const ownState = this.local.state(now);
    // A circuit that opened on its own (the model failed while Redis was away, also for a replica that started then)
    // re-opens a closed fleet circuit; one only seeded open from the fleet does so only if the fleet lost its state.
    const own = ownState === 'closed' ? 'closed' : this.openedOnItsOwn ? 'opened' : 'seeded';
    const ownLeft = Math.max(0, (this.local.openWindow(now)?.nextAttemptAt ?? now) - now);
    try {
      const state = await this.ask(CIRCUIT_SCRIPTS.join, {
        own,
        openForMs: Math.round(ownLeft),
        maxOpenMs: this.policy.maxOpenMs,
        epoch: this.mirror?.epoch ?? '',
      });
      if (this.stopped) return false;
      this.offset = state.now - this.link.localNow();
      // Taken whatever its version: a Redis that restarted empty counts versions from 0 again.
      this.mirror = state;
      this.closedTicket = { generation: state.generation, trial: false, fleet: true };
      this.joined = true;
      this.openedOnItsOwn = false;
      for (const token of this.unheardLeases.splice(0)) this.releaseLease(token);
      if (this.everJoined) this.logger.log(`Circuit "${this.breaker}" is shared by the fleet again: ${state.phase}`);
      this.everJoined = true;
      const visible = this.state(this.link.localNow());
      if (visible !== ownState) this.onTransition(ownState, visible, this.openWindow(this.link.localNow())?.nextAttemptAt, !state.changed);
      if (this.heard) this.apply(this.heard);
      this.heard = undefined;
      return true;
    } catch (error) {
      this.logger.debug(`Circuit "${this.breaker}" could not join the fleet's circuit: ${errorMessage(error)}`);
      return false;
    } finally {
      this.joining = false;
    }
  }

  /** Leaves the fleet's circuit while Redis is unavailable: this replica's own circuit takes over from the last state. */
  leave(why: string): void {
    if (!this.joined) return;
    this.joined = false;
    const seed = this.seedFrom(this.mirror!);
    this.local.seed(seed);
    this.logger.warn(
      `Circuit "${this.breaker}" is this replica's own until it can share the fleet's again (${why}); it starts ${seed.state}` +
        `${seed.openUntil !== undefined ? ` until ${new Date(toWallClock(seed.openUntil)).toISOString()}` : ''}`,
    );
  }

  private async acquire(now: number): Promise<FleetTicket | Ticket | undefined> {
    this.acquiring = true;
    const token = `${this.link.replicaId}:${++this.leases}`;
    try {
      const state = await this.ask(CIRCUIT_SCRIPTS.acquire, { token, leaseMs: this.policy.leaseMs });
      this.follow(state);
      if (!state.granted) return undefined;
      if (!this.joined) {
        // Granted after this replica left the fleet (Redis trouble meanwhile): nobody here runs the trial, so the
        // lease goes back now, or, if Redis does not take it, once this replica joins again.
        this.giveBack(token);
        return this.stopped ? undefined : this.local.admit(now);
      }
      const ticket: FleetTicket = { generation: state.generation, trial: true, fleet: true, token };
      this.hold(ticket);
      return ticket;
    } catch (error) {
      // Redis may have granted it all the same: the fleet would wait for the lease to run out.
      this.unheardLeases.push(token);
      this.leave(errorMessage(error));
      return this.stopped ? undefined : this.local.admit(now);
    } finally {
      this.acquiring = false;
    }
  }

  /** Holds the trial's lease, renewing it while the call runs and this replica follows the fleet. */
  private hold(ticket: FleetTicket): void {
    this.release();
    this.heldTrial = ticket;
    const { leaseMs, leaseRenewMs } = this.policy;
    if (leaseRenewMs <= 0) return;
    this.leaseKeeper = setInterval(() => {
      // Out of the fleet (Redis away) nothing is renewed; back in, the script renews only a lease still this trial's
      // and not yet run out. Once it is not (the lease ran out, went elsewhere, or the trial ended), renewing stops.
      if (!this.joined) return;
      void this.report(CIRCUIT_SCRIPTS.renew, { generation: ticket.generation, token: ticket.token!, leaseMs }, (state) => {
        if (!state.granted && this.heldTrial === ticket) this.release();
      });
    }, leaseRenewMs).unref();
  }

  /** Stops holding the trial (its outcome is being told, or this replica stops). */
  private release(): void {
    clearInterval(this.leaseKeeper);
    this.leaseKeeper = undefined;
    this.heldTrial = undefined;
  }

  /** Gives back a lease whose grant this replica may never have heard of. */
  private releaseLease(token: string): void {
    void this.report(CIRCUIT_SCRIPTS.trial, releaseArguments(token));
  }

  /** Gives back, while out of the fleet, a lease granted to this replica; kept for the rejoin if Redis fails again. */
  private giveBack(token: string): void {
    this.link.run(CIRCUIT_SCRIPTS.trial, this.breaker, releaseArguments(token)).catch(() => this.unheardLeases.push(token));
  }

  /** A script that always replies with the state. */
  private async ask<A extends object>(script: CircuitScript<A>, args: NoInfer<A>): Promise<FleetState> {
    const state = await this.link.run(script, this.breaker, args);
    if (!state) throw new Error(`the circuit's ${script.name} script replied nothing`);
    return state;
  }

  /** Tells the fleet an outcome; the promise resolves once the reply is followed (or Redis failed), never rejects. */
  private report<A extends object>(script: CircuitScript<A>, args: NoInfer<A>, onReply?: (state: FleetState) => void): Promise<void> {
    const reported = this.link.run(script, this.breaker, args).then(
      (state) => {
        if (!state) return;
        this.follow(state);
        onReply?.(state);
      },
      (error: unknown) => this.leave(errorMessage(error)),
    );
    this.reports.add(reported);
    const forget = () => this.reports.delete(reported);
    reported.then(forget, forget);
    return reported;
  }

  /** A script's reply: the newest state, and the clocks' offset. */
  private follow(state: FleetState): void {
    if (!this.joined) return;
    this.offset = state.now - this.link.localNow();
    this.apply(state);
  }

  private apply(state: FleetState): void {
    const mirror = this.mirror!;
    // Within one epoch, versions order the changes; a new epoch (the hash expired, was evicted or flushed while this
    // replica stayed connected) is taken as it comes, or its changes would all look older than the mirror.
    if (state.epoch === mirror.epoch && state.version <= mirror.version) return;
    this.mirror = state;
    if (state.generation !== mirror.generation) this.closedTicket = { generation: state.generation, trial: false, fleet: true };
    if (state.phase === mirror.phase) return;
    const nextAttemptAt = state.phase === 'open' ? state.openUntil - this.offset : undefined;
    this.onTransition(mirror.phase, state.phase, nextAttemptAt, state.by !== this.link.replicaId);
  }

  private seedFrom(mirror: FleetState): CircuitSeed {
    // The cause's time is Redis' clock, like the mirror's others: converted to this replica's.
    const cause = mirror.cause && { ...mirror.cause, at: mirror.cause.at - this.offset };
    const base = { failures: mirror.failures, failedTrials: mirror.failedTrials, ...(cause ? { cause } : {}) };
    if (mirror.phase === 'closed') return { state: 'closed', ...base };
    // A trial leased elsewhere may still be running: this replica's own trial waits for its lease to run out.
    const until = mirror.phase === 'open' ? mirror.openUntil : mirror.leased ? mirror.leaseUntil : 0;
    return { state: 'open', ...base, openedAt: (mirror.openedAt || mirror.now) - this.offset, openUntil: until - this.offset };
  }
}
