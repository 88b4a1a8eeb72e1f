import { randomUUID } from 'node:crypto';
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  type OnModuleInit,
  Optional,
} from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { RedisConnection, type RedisClient } from '../../redis/redis-connection.js';
import { runScript } from '../../redis/redis-script.js';
import { withinDeadline } from '../../common/deadline.js';
import { circuitBreakerConfig } from '../../config/circuit-breaker.config.js';
import { errorMessage } from '../../logging/error-message.js';
import { CIRCUIT_CLOCK } from '../circuit-breaker.constants.js';
import type { CircuitPolicy, TransitionListener } from '../circuit-state.js';
import { monotonicNow } from '../monotonic-clock.js';
import { type CircuitScript, type FleetState, parseFleetState, parseReply } from './circuit-codec.js';
import { circuitChannel, circuitKey } from './circuit-scripts.js';
import { FleetCircuit, type FleetLink } from './fleet-circuit.js';

/** A script slower than this counts as Redis unavailable: the replica carries on with its own circuit. */
const SCRIPT_DEADLINE_MS = 500;
/** How often each circuit checks Redis is there (leaving or joining the fleet's circuit accordingly). */
const MAINTAIN_INTERVAL_MS = 1000;
/** Start-up waits this long, at most, for the subscription and the fleet's state before serving on its own. */
const JOIN_GRACE_MS = 2000;
/** The trial's lease outlives the call's time-out by this much, so a replica that dies mid-trial frees it soon. */
const LEASE_MARGIN_MS = 1000;
/** A running trial renews its lease this many times per lease: a renewal or two can be late without losing it. */
const LEASE_RENEWALS = 3;

/**
 * Links this replica's breakers to their fleet circuits in Redis (CIRCUIT_BREAKER_SHARED with REDIS_URL): runs
 * their scripts over the answer cache's connection, and listens to their channels on a second connection (a
 * subscribed connection can do nothing else). Changes are pushed, so an opening anywhere reaches every replica in
 * one network hop. Inert without REDIS_URL or with sharing turned off.
 */
@Injectable()
export class SharedCircuitStore implements FleetLink, OnModuleInit, OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(SharedCircuitStore.name);
  readonly replicaId = randomUUID();
  private readonly circuits = new Map<string, FleetCircuit>();
  private subscriber?: RedisClient;
  private subscribed = false;
  private subscribing = false;
  private closing = false;
  private maintainer?: NodeJS.Timeout;
  private readonly clock: () => number;

  constructor(
    @Inject(circuitBreakerConfig.KEY) private readonly config: ConfigType<typeof circuitBreakerConfig>,
    private readonly redis: RedisConnection,
    @Optional() @Inject(CIRCUIT_CLOCK) clock?: () => number,
  ) {
    this.clock = clock ?? monotonicNow;
  }

  /** Sharing is configured (CIRCUIT_BREAKER_SHARED and REDIS_URL). */
  get enabled(): boolean {
    return this.config.shared && this.redis.client !== undefined;
  }

  localNow(): number {
    return this.clock();
  }

  /** Redis answers and this replica hears the circuits' changes. */
  get connected(): boolean {
    return this.redis.isReady && this.subscribed && (this.subscriber?.isReady ?? false);
  }

  /**
   * A circuit shared by the fleet for `breaker`, linked to this store. Its trial's lease holds the call's time-out plus
   * a second, renewed while the trial runs (every third of that, unless `leaseRenewMs` says otherwise; 0: never).
   */
  circuit(
    breaker: string,
    policy: CircuitPolicy & { timeoutMs: number; leaseRenewMs?: number },
    onTransition: TransitionListener,
    random: () => number,
  ): FleetCircuit {
    const leaseMs = policy.timeoutMs + LEASE_MARGIN_MS;
    const leaseRenewMs = policy.leaseRenewMs ?? Math.floor(leaseMs / LEASE_RENEWALS);
    const circuit = new FleetCircuit(breaker, { ...policy, leaseMs, leaseRenewMs }, this, onTransition, random);
    this.circuits.set(breaker, circuit);
    if (this.subscribed)
      void this.listen(breaker).then(
        () => circuit.join(),
        () => undefined,
      );
    return circuit;
  }

  async run<A extends object>(script: CircuitScript<A>, breaker: string, args: NoInfer<A>): Promise<FleetState | undefined> {
    const client = this.redis.client;
    // The connection reports the cause (once per outage); here it is only why the circuit is this replica's own.
    if (!client || !this.redis.isReady) throw new Error('Redis is unavailable');
    const encoded = script.encode({ now: this.scriptClock(), by: this.replicaId }, args);
    const options = { keys: [circuitKey(breaker), circuitChannel(breaker)], arguments: [encoded] };
    const reply = await withinDeadline(runScript(client, script, options), SCRIPT_DEADLINE_MS, (why): never => {
      throw new Error(`the circuit's ${script.name} script failed: ${why}`);
    });
    return parseReply(reply);
  }

  async onModuleInit(): Promise<void> {
    if (!this.enabled || this.circuits.size === 0) return;
    const subscriber = this.redis.client!.duplicate();
    this.subscriber = subscriber;
    // Without the subscription a replica would miss openings: it carries on with its own circuit until it is back.
    // (The cache's connection reports the outage, once; this one just reconnects.)
    subscriber.on('error', () => this.leaveAll("the subscription to the circuits' changes was lost"));
    // node-redis subscribes again before 'ready' on every reconnection: each circuit then catches up with the fleet.
    subscriber.on('ready', () => {
      if (this.subscribed) for (const circuit of this.circuits.values()) void circuit.join();
    });
    const connecting = subscriber
      .connect()
      .then(() => this.subscribeAll())
      .catch((error: unknown) => this.logger.warn(`Breakers run on their own until Redis answers: ${errorMessage(error)}`));
    await Promise.race([connecting, delay(JOIN_GRACE_MS)]);
  }

  /** Before the first request: each circuit takes up the fleet's state, so a new replica obeys an open circuit at once. */
  async onApplicationBootstrap(): Promise<void> {
    if (!this.enabled || this.circuits.size === 0) return;
    this.maintainer = setInterval(() => this.maintain(), MAINTAIN_INTERVAL_MS).unref();
    if (!this.subscribed) return;
    const joined = await Promise.race([Promise.all([...this.circuits.values()].map((c) => c.join())), delay(JOIN_GRACE_MS)]);
    if (joined?.every(Boolean)) this.logger.log(`Circuits shared by the fleet through Redis: ${[...this.circuits.keys()].join(', ')}`);
  }

  async onApplicationShutdown(): Promise<void> {
    this.closing = true;
    clearInterval(this.maintainer);
    // Outcomes already told are recorded before the connection goes (each within the script's deadline).
    await Promise.all([...this.circuits.values()].map((circuit) => circuit.flush()));
    const subscriber = this.subscriber;
    if (!subscriber?.isOpen) return;
    this.subscribed = false;
    await subscriber.disconnect().catch(() => undefined);
  }

  /** Subscribes to every circuit's channel; again from maintain() if a first attempt failed (Redis went meanwhile). */
  private async subscribeAll(): Promise<void> {
    if (this.subscribing) return;
    this.subscribing = true;
    try {
      for (const breaker of this.circuits.keys()) await this.listen(breaker);
      this.subscribed = true;
    } finally {
      this.subscribing = false;
    }
  }

  private async listen(breaker: string): Promise<void> {
    await this.subscriber!.subscribe(circuitChannel(breaker), (message) => this.hear(breaker, message));
  }

  private hear(breaker: string, message: string): void {
    let state: FleetState;
    try {
      state = parseFleetState(message);
    } catch (error) {
      this.logger.warn(`Ignored a message on circuit "${breaker}"'s channel: ${errorMessage(error)}`);
      return;
    }
    this.circuits.get(breaker)?.hear(state);
  }

  /** Leaves the fleet's circuits while Redis is unavailable, joins them again when it is back. */
  private maintain(): void {
    if (this.closing) return;
    if (!this.subscribed && this.subscriber?.isReady) void this.subscribeAll().catch(() => undefined);
    const connected = this.connected;
    for (const circuit of this.circuits.values()) {
      // The connection logs the outage's cause; the circuit says what it does about it.
      if (!connected) circuit.leave(this.redis.isReady ? 'not subscribed to its changes' : 'Redis is unavailable');
      else void circuit.join();
    }
  }

  private leaveAll(why: string): void {
    if (this.closing) return;
    for (const circuit of this.circuits.values()) circuit.leave(why);
  }

  /** Undefined: the scripts read Redis' clock. A test that drives time passes its own. */
  private scriptClock(): number | undefined {
    return this.clock === monotonicNow ? undefined : this.clock();
  }
}

function delay(ms: number): Promise<undefined> {
  return new Promise((resolve) => setTimeout(() => resolve(undefined), ms).unref());
}
