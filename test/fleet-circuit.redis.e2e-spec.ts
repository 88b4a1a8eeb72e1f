import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { createClient } from 'redis';
import { RedisConnection } from '../src/redis/redis-connection.js';
import type { CircuitPolicy, CircuitState, Ticket } from '../src/circuit-breaker/circuit-state.js';
import { parseFleetState } from '../src/circuit-breaker/fleet/circuit-codec.js';
import { CIRCUIT_KEY_PREFIX, CIRCUIT_SCRIPTS, circuitChannel, circuitKey } from '../src/circuit-breaker/fleet/circuit-scripts.js';
import type { FleetCircuit } from '../src/circuit-breaker/fleet/fleet-circuit.js';
import { SharedCircuitStore } from '../src/circuit-breaker/fleet/shared-circuit-store.js';
import type { cacheConfig } from '../src/config/cache.config.js';
import { TEST_BREAKER_CONFIG } from './support/breaker-config.js';
import { RedisTestServer } from './support/redis-server.js';

// The fleet's circuit (src/circuit-breaker/fleet/) against a real redis-server: three replicas, each its own
// RedisConnection, SharedCircuitStore and FleetCircuit, as three processes would have. Time is a shared test clock
// handed to the store (the scripts then take it instead of Redis' TIME), so periods pass without waiting.
// fleet-contract.redis.e2e-spec.ts runs the contract's reference model against such replicas.

const START = new Date('2030-01-01T00:00:00.000Z').getTime();
const BREAKER = 'model';
const TIMEOUT_MS = 1000;
/** The store's lease: the call's time-out + 1 s. */
const LEASE_MS = TIMEOUT_MS + 1000;

interface Replica {
  redis: RedisConnection;
  store: SharedCircuitStore;
  circuit: FleetCircuit;
  transitions: Array<{ from: CircuitState; to: CircuitState; observed: boolean }>;
  close(): Promise<void>;
}

const clock = { now: START };
/** The failure-rate policy off: only failures in a row open. */
const NO_FAILURE_RATE = { failureRate: 0, windowMs: 30_000, minCalls: 20 };

/**
 * `leaseRenewMs`: how often a running trial renews its lease, in real time. Off unless a test is about it: the test
 * clock moves in steps, and a renewal landing between two of them would move the lease where the test does not expect it.
 */
async function startReplica(url: string, policy: CircuitPolicy, tickClock = true, leaseRenewMs = 0): Promise<Replica> {
  const redis = new RedisConnection({ redisUrl: url } as ConfigType<typeof cacheConfig>);
  const config = { ...TEST_BREAKER_CONFIG, timeoutMs: TIMEOUT_MS, shared: true };
  const store = new SharedCircuitStore(config, redis, tickClock ? () => clock.now : undefined);
  const transitions: Replica['transitions'] = [];
  const circuit = store.circuit(
    BREAKER,
    { ...policy, timeoutMs: TIMEOUT_MS, leaseRenewMs },
    (from, to, _next, observed) => transitions.push({ from, to, observed: observed ?? false }),
    () => 0.5,
  );
  await redis.onModuleInit();
  await store.onModuleInit();
  await store.onApplicationBootstrap();
  return {
    redis,
    store,
    circuit,
    transitions,
    close: async () => {
      circuit.shutdown(clock.now);
      await store.onApplicationShutdown();
      await redis.onApplicationShutdown();
    },
  };
}

/** Polls `check` (every 5 ms) until it holds, or `ms` passed. */
async function eventually(check: () => boolean, ms = 2000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return true;
}

/** Asks `replica` for a call every 10 ms until it is admitted (the trial, once the lease is free), or `ms` passed. */
async function admittedWithin(replica: Replica, ms: number): Promise<Ticket | undefined> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ticket = await replica.circuit.admit(clock.now);
    if (ticket || Date.now() > deadline) return ticket;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** How a call ended, as the breaker tells its circuit. */
function outcomeOf(ending: 'success' | 'failure') {
  return ending === 'success'
    ? ({ kind: 'success' } as const)
    : ({ kind: 'failure', cause: { kind: 'http', status: 500, at: clock.now } } as const);
}

describe('The fleet circuit on a real Redis', () => {
  let redisServer: RedisTestServer;
  let admin: ReturnType<typeof createClient>;

  beforeAll(async () => {
    redisServer = await RedisTestServer.start();
    admin = createClient({ url: redisServer.url });
    // One test kills Redis: this client reconnects like the replicas do.
    admin.on('error', () => undefined);
    await admin.connect();
  });

  afterAll(async () => {
    await admin.disconnect().catch(() => undefined);
    await redisServer.stop();
  });

  beforeEach(async () => {
    clock.now = START;
    await admin.flushAll();
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'debug').mockImplementation(() => undefined);
  });

  afterEach(() => {
    jest.restoreAllMocks();
  });

  /** Two replicas (threshold 1, reset period 1 s), the circuit opened by one failure on the first and seen by both. */
  async function twoReplicasOpenedByOneFailure(): Promise<[Replica, Replica]> {
    const policy = { failureThreshold: 1, resetTimeoutMs: 1000, maxOpenMs: 300_000, resetBackoff: 1, ...NO_FAILURE_RATE };
    const [a, b] = await Promise.all([0, 1].map(() => startReplica(redisServer.url, policy)));
    await a.circuit.settle((await a.circuit.admit(clock.now))!, outcomeOf('failure'), clock.now);
    expect(await eventually(() => b.circuit.state(clock.now) === 'open')).toBe(true);
    return [a, b];
  }

  it('counts failures from every replica as one run, and the opening reaches every replica; each transition is logged as made by one replica only', async () => {
    const policy = { failureThreshold: 6, resetTimeoutMs: 2000, maxOpenMs: 300_000, resetBackoff: 1, ...NO_FAILURE_RATE };
    const replicas = await Promise.all([0, 1, 2].map(() => startReplica(redisServer.url, policy)));
    try {
      // 6 calls admitted at once, 2 on each replica, all failing together: one run of 6, not 2 on each.
      const tickets = await Promise.all(
        replicas.flatMap((r) => [r.circuit.admit(clock.now), r.circuit.admit(clock.now)].map(async (t) => t)),
      );
      await Promise.all(
        tickets.map(async (ticket, i) => replicas[Math.floor(i / 2)].circuit.settle(ticket!, outcomeOf('failure'), clock.now)),
      );
      expect(await eventually(() => replicas.every((r) => r.circuit.state(clock.now) === 'open'))).toBe(true);
      expect(replicas.map((r) => r.circuit.failures)).toEqual([6, 6, 6]);
      const made = replicas.flatMap((r) => r.transitions.filter((t) => !t.observed));
      const observed = replicas.flatMap((r) => r.transitions.filter((t) => t.observed));
      expect(made).toEqual([{ from: 'closed', to: 'open', observed: false }]);
      expect(observed).toHaveLength(2);
    } finally {
      await Promise.all(replicas.map((r) => r.close()));
    }
  });

  it('grants the half-open trial to exactly one of many replicas asking at once, and frees it when its lease runs out', async () => {
    const policy = { failureThreshold: 1, resetTimeoutMs: 1000, maxOpenMs: 300_000, resetBackoff: 1, ...NO_FAILURE_RATE };
    const replicas = await Promise.all([0, 1, 2, 3, 4].map(() => startReplica(redisServer.url, policy)));
    try {
      const ticket = await replicas[0].circuit.admit(clock.now);
      await replicas[0].circuit.settle(ticket!, outcomeOf('failure'), clock.now);
      expect(await eventually(() => replicas.every((r) => r.circuit.state(clock.now) === 'open'))).toBe(true);
      clock.now += 1000;
      const asked = await Promise.all(replicas.map(async (r) => r.circuit.admit(clock.now)));
      expect(asked.filter((t) => t?.trial)).toHaveLength(1);
      expect(asked.filter((t) => t === undefined)).toHaveLength(4);
      // The trial's holder dies: once its lease expires (time-out + 1 s) another replica may try.
      await eventually(() => false, 50);
      expect(await Promise.all(replicas.map(async (r) => r.circuit.admit(clock.now + LEASE_MS - 1)))).toEqual([
        undefined,
        undefined,
        undefined,
        undefined,
        undefined,
      ]);
      clock.now += LEASE_MS;
      const again = await Promise.all(replicas.map(async (r) => r.circuit.admit(clock.now)));
      expect(again.filter((t) => t?.trial)).toHaveLength(1);
    } finally {
      await Promise.all(replicas.map((r) => r.close()));
    }
  });

  it('follows a circuit whose hash vanished while every replica stayed connected (expired, evicted, flushed): it counts and opens again', async () => {
    const policy = { failureThreshold: 2, resetTimeoutMs: 1000, maxOpenMs: 300_000, resetBackoff: 1, ...NO_FAILURE_RATE };
    const replicas = await Promise.all([0, 1, 2].map(() => startReplica(redisServer.url, policy)));
    try {
      const [a, b] = replicas;
      // One open / half-open / closed cycle: the mirrors are at a later generation and version than a new hash.
      for (let i = 0; i < 2; i++) await a.circuit.settle((await a.circuit.admit(clock.now))!, outcomeOf('failure'), clock.now);
      expect(await eventually(() => b.circuit.state(clock.now) === 'open')).toBe(true);
      clock.now += 1000;
      await b.circuit.settle((await b.circuit.admit(clock.now))!, outcomeOf('success'), clock.now);
      expect(await eventually(() => replicas.every((r) => r.circuit.state(clock.now) === 'closed'))).toBe(true);

      await admin.del(circuitKey(BREAKER));
      for (let i = 0; i < 2; i++) {
        const ticket = await a.circuit.admit(clock.now);
        expect(ticket).toBeDefined();
        await a.circuit.settle(ticket!, outcomeOf('failure'), clock.now);
      }
      expect(await eventually(() => replicas.every((r) => r.circuit.state(clock.now) === 'open'))).toBe(true);
    } finally {
      await Promise.all(replicas.map((r) => r.close()));
    }
  });

  it('closes on a trial that outlived its lease (a long stream) and answered, though another replica took the lease meanwhile', async () => {
    const [a, b] = await twoReplicasOpenedByOneFailure();
    try {
      clock.now += 1000;
      const first = await a.circuit.admit(clock.now);
      expect(first?.trial).toBe(true);
      expect(await eventually(() => b.circuit.admit(clock.now) === undefined)).toBe(true);
      clock.now += LEASE_MS;
      const second = await b.circuit.admit(clock.now);
      expect(second?.trial).toBe(true);
      await a.circuit.settle(first!, outcomeOf('success'), clock.now);
      expect(await eventually(() => [a, b].every((r) => r.circuit.state(clock.now) === 'closed'))).toBe(true);
      // The second trial's outcome belongs to a generation that has ended.
      await b.circuit.settle(second!, outcomeOf('failure'), clock.now);
      expect([a, b].map((r) => r.circuit.state(clock.now))).toEqual(['closed', 'closed']);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('does not re-open on rejoining a circuit the fleet closed meanwhile, when its own was only seeded open from the fleet', async () => {
    const [a, b] = await twoReplicasOpenedByOneFailure();
    try {
      b.circuit.leave('a moment without Redis');
      expect(b.circuit.scope).toBe('replica');
      clock.now += 1000;
      await a.circuit.settle((await a.circuit.admit(clock.now))!, outcomeOf('success'), clock.now);
      expect(await b.circuit.join()).toBe(true);
      expect(await eventually(() => [a, b].every((r) => r.circuit.state(clock.now) === 'closed'))).toBe(true);
      expect(b.circuit.admit(clock.now)).toMatchObject({ trial: false });
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('gives back the trial when a replica shuts down holding it, so the fleet need not wait for the lease to run out', async () => {
    const [a, b] = await twoReplicasOpenedByOneFailure();
    try {
      clock.now += 1000;
      expect((await a.circuit.admit(clock.now))?.trial).toBe(true);
      await a.close();
      // Well before the lease (time-out + 1 s) would run out: the clock does not move.
      expect((await admittedWithin(b, 2000))?.trial).toBe(true);
    } finally {
      await b.close();
    }
  });

  it('releases a trial lease whose grant missed its deadline (Redis paused), once Redis answers again', async () => {
    const [a, b] = await twoReplicasOpenedByOneFailure();
    try {
      clock.now += 1000;
      redisServer.pause();
      let own;
      try {
        // No answer within the deadline: a's own circuit takes over, and gives a its own trial.
        own = await a.circuit.admit(clock.now);
      } finally {
        redisServer.resume();
      }
      expect(own).toMatchObject({ trial: true });
      expect(a.circuit.scope).toBe('replica');
      // Redis ran the request once resumed, granting a lease nobody will use: a gives it back when it rejoins.
      expect(await eventually(() => a.circuit.scope === 'fleet', 8000)).toBe(true);
      expect((await admittedWithin(b, 2000))?.trial).toBe(true);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  }, 30_000);

  it('keeps a trial that runs past its lease the only one: its holder renews the lease, and once the holder is gone it runs out', async () => {
    const policy = { failureThreshold: 1, resetTimeoutMs: 1000, maxOpenMs: 300_000, resetBackoff: 1, ...NO_FAILURE_RATE };
    const [a, b] = await Promise.all([0, 1].map(() => startReplica(redisServer.url, policy, true, 100)));
    try {
      await a.circuit.settle((await a.circuit.admit(clock.now))!, outcomeOf('failure'), clock.now);
      expect(await eventually(() => b.circuit.state(clock.now) === 'open')).toBe(true);
      clock.now += 1000;
      const trial = (await a.circuit.admit(clock.now)) as Ticket & { token: string };
      expect(trial).toMatchObject({ trial: true });
      // The trial runs for 3 leases (2 s each). Each step: the other replica hears a renewal (the lease holds 2 s from
      // now), the clock moves 1.5 s on, and the other replica is refused the trial.
      for (let step = 0; step < 4; step++) {
        const version = Number(await admin.hGet(circuitKey(BREAKER), 'ver'));
        expect(await eventually(() => b.circuit.version! > version, 5000)).toBe(true);
        clock.now += 1500;
        expect(await b.circuit.admit(clock.now)).toBeUndefined();
      }
      // Its holder loses Redis (as if it died): nothing renews the lease, which runs out; then the trial is free.
      await a.redis.onApplicationShutdown();
      expect(await eventually(() => a.circuit.scope === 'replica')).toBe(true);
      const [leaseUntil, version] = (await admin.hmGet(circuitKey(BREAKER), ['leaseUntil', 'ver'])).map(Number);
      expect(await eventually(() => b.circuit.version === version)).toBe(true);
      clock.now = leaseUntil - 1;
      expect(await b.circuit.admit(clock.now)).toBeUndefined();
      clock.now = leaseUntil;
      // A renewal that comes after the lease ran out (its holder stalled) does not bring it back.
      const late = await b.store.run(CIRCUIT_SCRIPTS.renew, BREAKER, {
        generation: trial.generation,
        token: trial.token,
        leaseMs: LEASE_MS,
      });
      expect(late).toMatchObject({ granted: false, leaseUntil });
      expect(await b.circuit.admit(clock.now)).toMatchObject({ trial: true });
    } finally {
      await Promise.all([a, b].map((r) => r.close()));
    }
  });

  it('makes a replica that starts while the circuit is open refuse from its first call, with no trial of its own', async () => {
    const policy = { failureThreshold: 1, resetTimeoutMs: 5000, maxOpenMs: 300_000, resetBackoff: 1, ...NO_FAILURE_RATE };
    const first = await startReplica(redisServer.url, policy);
    const ticket = await first.circuit.admit(clock.now);
    await first.circuit.settle(ticket!, outcomeOf('failure'), clock.now);
    expect(await eventually(() => first.circuit.state(clock.now) === 'open')).toBe(true);
    const late = await startReplica(redisServer.url, policy);
    try {
      expect(late.circuit.scope).toBe('fleet');
      expect(late.circuit.admit(clock.now)).toBeUndefined();
      expect(late.circuit.openWindow(clock.now)?.nextAttemptAt).toBe(START + 5000);
    } finally {
      await Promise.all([first.close(), late.close()]);
    }
  });

  it('counts replicas mid-way through a change of the window size in one window: 50 % failures alternating between them still open', async () => {
    const rate = { failureThreshold: 50, resetTimeoutMs: 1000, maxOpenMs: 300_000, resetBackoff: 1, failureRate: 0.5, minCalls: 4 };
    const [before, after] = await Promise.all([
      startReplica(redisServer.url, { ...rate, windowMs: 10_000 }),
      startReplica(redisServer.url, { ...rate, windowMs: 20_000 }),
    ]);
    try {
      // Success, failure, success, failure, one on each replica in turn: the fourth call makes 2 of 4.
      for (const [i, ending] of (['success', 'failure', 'success', 'failure'] as const).entries()) {
        const replica = i % 2 === 0 ? before : after;
        await replica.circuit.settle((await replica.circuit.admit(clock.now))!, outcomeOf(ending), clock.now);
        await replica.circuit.flush();
        clock.now += 100;
      }
      expect(await eventually(() => [before, after].every((r) => r.circuit.state(clock.now) === 'open'))).toBe(true);
    } finally {
      await Promise.all([before, after].map((r) => r.close()));
    }
  });

  it('replies and publishes, as named fields, the state the hash holds: epoch milliseconds exact, ids as strings', async () => {
    const policy = { failureThreshold: 2, resetTimeoutMs: 30_000, maxOpenMs: 300_000, resetBackoff: 1, ...NO_FAILURE_RATE };
    const replica = await startReplica(redisServer.url, policy);
    const listener = admin.duplicate();
    const messages: string[] = [];
    try {
      await listener.connect();
      await listener.subscribe(circuitChannel(BREAKER), (message) => messages.push(message));
      clock.now = START + 123;
      const failure = {
        generation: 0,
        failureThreshold: 2,
        resetTimeoutMs: 30_000,
        maxOpenMs: 300_000,
        opensAtOnce: false,
        cause: { kind: 'http', status: 503 },
        ...NO_FAILURE_RATE,
      };
      const counted = await replica.store.run(CIRCUIT_SCRIPTS.failure, BREAKER, failure);
      const { replicaId } = replica.store;
      expect(counted).toEqual({
        epoch: `${START + 123}-${replicaId}`,
        version: 1,
        generation: 0,
        phase: 'closed',
        failures: 1,
        failedTrials: 0,
        openedAt: 0,
        openUntil: 0,
        leased: false,
        leaseUntil: 0,
        by: replicaId,
        cause: { kind: 'http', status: 503, at: START + 123 },
        now: START + 123,
        changed: false,
        granted: false,
      });
      clock.now += 1;
      const opened = await replica.store.run(CIRCUIT_SCRIPTS.failure, BREAKER, { ...failure, cause: { kind: 'timeout' } });
      expect(opened).toMatchObject({ version: 2, generation: 1, phase: 'open', openedAt: START + 124, openUntil: START + 30_124 });
      expect(opened).toMatchObject({ cause: { kind: 'timeout', at: START + 124 }, changed: true });
      const stored = await admin.hGetAll(circuitKey(BREAKER));
      expect(stored).toMatchObject({ ver: '2', gen: '1', phase: 'open', openedAt: String(START + 124), openUntil: String(START + 30_124) });
      expect(stored).toMatchObject({ epoch: opened!.epoch, by: replicaId, causeKind: 'timeout', causeStatus: '0' });
      // The channel carries each change as the script's reply has it, less what only the caller is told.
      expect(await eventually(() => messages.length === 2)).toBe(true);
      expect(messages.map((message) => parseFleetState(message))).toEqual([counted, { ...opened, changed: false }]);
    } finally {
      await listener.disconnect().catch(() => undefined);
      await replica.close();
    }
  });

  it('holds the circuit open for the longest open period on a wait hint too long for a number (as JSON cannot send it)', async () => {
    const policy = { failureThreshold: 5, resetTimeoutMs: 30_000, maxOpenMs: 300_000, resetBackoff: 1, ...NO_FAILURE_RATE };
    const replica = await startReplica(redisServer.url, policy);
    try {
      const ticket = await replica.circuit.admit(clock.now);
      const outcome = { kind: 'failure', cause: { kind: 'http', status: 429, at: clock.now }, holdOpenMs: Infinity } as const;
      await replica.circuit.settle(ticket!, outcome, clock.now);
      expect(replica.circuit.scope).toBe('fleet');
      expect(replica.circuit.openWindow(clock.now)).toEqual({ openedAt: clock.now, nextAttemptAt: clock.now + 300_000 });
    } finally {
      await replica.close();
    }
  });

  it('keeps its keys under the prefix, with a TTL, and reads the time from Redis when no clock is given', async () => {
    const policy = { failureThreshold: 1, resetTimeoutMs: 30_000, maxOpenMs: 300_000, resetBackoff: 1, ...NO_FAILURE_RATE };
    const replica = await startReplica(redisServer.url, policy, false);
    try {
      const ticket = await replica.circuit.admit(Date.now());
      await replica.circuit.settle(ticket!, outcomeOf('failure'), Date.now());
      expect(await eventually(() => replica.circuit.state(Date.now()) === 'open')).toBe(true);
      expect(await admin.keys(`${CIRCUIT_KEY_PREFIX}*`)).toEqual([circuitKey(BREAKER)]);
      const ttl = await admin.pTTL(circuitKey(BREAKER));
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(86_400_000);
      const [seconds] = await admin.time().then((t) => [t.getTime()]);
      const openedAt = Number(await admin.hGet(circuitKey(BREAKER), 'openedAt'));
      expect(Math.abs(openedAt - seconds)).toBeLessThan(5000);
      expect(replica.circuit.openWindow(Date.now())!.nextAttemptAt - Date.now()).toBeGreaterThan(25_000);
    } finally {
      await replica.close();
    }
  });

  it("has a replica that started without Redis, and opened its own circuit, open the fleet's when Redis comes", async () => {
    const policy = { failureThreshold: 1, resetTimeoutMs: 5000, maxOpenMs: 300_000, resetBackoff: 1, ...NO_FAILURE_RATE };
    const early = await startReplica(redisServer.url, policy);
    await redisServer.kill();
    const late = await startReplica(redisServer.url, policy);
    try {
      expect(late.circuit.scope).toBe('replica');
      const ticket = await late.circuit.admit(clock.now);
      await late.circuit.settle(ticket!, outcomeOf('failure'), clock.now);
      expect(late.circuit.state(clock.now)).toBe('open');
      await redisServer.restart();
      const shared = () => [early, late].every((r) => r.circuit.scope === 'fleet' && r.circuit.state(clock.now) === 'open');
      expect(await eventually(shared, 8000)).toBe(true);
      expect(early.circuit.openWindow(clock.now)?.nextAttemptAt).toBe(START + 5000);
    } finally {
      await Promise.all([early.close(), late.close()]);
    }
  }, 30_000);

  it('without Redis each replica carries on with its own circuit from the last shared state, and rejoins when Redis is back', async () => {
    const policy = { failureThreshold: 2, resetTimeoutMs: 1000, maxOpenMs: 300_000, resetBackoff: 1, ...NO_FAILURE_RATE };
    const replicas = await Promise.all([0, 1].map(() => startReplica(redisServer.url, policy)));
    try {
      const [a, b] = replicas;
      const ticket = await a.circuit.admit(clock.now);
      await a.circuit.settle(ticket!, outcomeOf('failure'), clock.now);
      const other = await a.circuit.admit(clock.now);
      await a.circuit.settle(other!, outcomeOf('failure'), clock.now);
      expect(await eventually(() => b.circuit.state(clock.now) === 'open')).toBe(true);

      await redisServer.kill();
      expect(await eventually(() => replicas.every((r) => r.circuit.scope === 'replica'), 5000)).toBe(true);
      // Seeded open: still refusing, and each replica's own trial once the period is over.
      expect(replicas.map((r) => r.circuit.admit(clock.now))).toEqual([undefined, undefined]);
      clock.now += 1000;
      const trials = await Promise.all(replicas.map(async (r) => r.circuit.admit(clock.now)));
      expect(trials.map((t) => t?.trial)).toEqual([true, true]);
      // b's trial fails: b's own circuit re-opens; a's succeeds: a's closes.
      await b.circuit.settle(trials[1]!, outcomeOf('failure'), clock.now);
      await a.circuit.settle(trials[0]!, outcomeOf('success'), clock.now);
      expect(replicas.map((r) => r.circuit.state(clock.now))).toEqual(['closed', 'open']);

      // Redis is back, empty: b's open circuit re-opens the fleet's, which both follow: one trial for both again.
      await redisServer.restart();
      expect(await eventually(() => replicas.every((r) => r.circuit.scope === 'fleet'), 8000)).toBe(true);
      expect(await eventually(() => replicas.every((r) => r.circuit.state(clock.now) === 'open'))).toBe(true);
      clock.now += 1000;
      const asked = await Promise.all(replicas.map(async (r) => r.circuit.admit(clock.now)));
      expect(asked.filter((t) => t?.trial)).toHaveLength(1);
    } finally {
      await Promise.all(replicas.map((r) => r.close()));
    }
  }, 30_000);
});
