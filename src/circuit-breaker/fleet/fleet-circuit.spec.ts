import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import type { CallOutcome, CircuitPolicy, CircuitState, Ticket } from '../circuit-state.js';
import type { CircuitScript, FleetState } from './circuit-codec.js';
import { FleetCircuit, type FleetLink } from './fleet-circuit.js';

// FleetCircuit's own decisions, with the link to Redis played by a script: what it does when Redis fails or is slow,
// what it follows, what it seeds its own circuit with. The scripts themselves run on a real Redis in
// test/fleet-circuit.redis.e2e-spec.ts.

const NOW = new Date('2030-01-01T00:00:00.000Z').getTime();
const POLICY: CircuitPolicy & { leaseMs: number; leaseRenewMs: number } = {
  failureThreshold: 2,
  resetTimeoutMs: 10_000,
  maxOpenMs: 300_000,
  resetBackoff: 1,
  failureRate: 0,
  windowMs: 30_000,
  minCalls: 20,
  leaseMs: 2000,
  leaseRenewMs: 0,
};
const FAILURE: CallOutcome = { kind: 'failure', cause: { kind: 'http', status: 500, at: NOW } };

function fleetState(overrides: Partial<FleetState> = {}): FleetState {
  return {
    epoch: 'e1',
    version: 1,
    generation: 0,
    phase: 'closed',
    failures: 0,
    failedTrials: 0,
    openedAt: 0,
    openUntil: 0,
    leased: false,
    leaseUntil: 0,
    by: 'other',
    now: NOW,
    changed: false,
    granted: false,
    ...overrides,
  };
}

/** A link whose next replies are given by the test: a state, undefined (nothing changed), or an error. */
class ScriptedLink implements FleetLink {
  readonly replicaId = 'me';
  readonly calls: Array<{ script: string; args: object }> = [];
  private readonly replies: Array<FleetState | undefined | Error> = [];

  localNow(): number {
    return NOW;
  }

  reply(...replies: Array<FleetState | undefined | Error>): this {
    this.replies.push(...replies);
    return this;
  }

  run<A extends object>(script: CircuitScript<A>, _breaker: string, args: NoInfer<A>): Promise<FleetState | undefined> {
    this.calls.push({ script: script.name, args });
    const reply = this.replies.shift();
    return reply instanceof Error ? Promise.reject(reply) : Promise.resolve(reply);
  }
}

async function joined(
  link: ScriptedLink,
  state = fleetState(),
  policy = POLICY,
): Promise<{ circuit: FleetCircuit; transitions: string[] }> {
  const transitions: string[] = [];
  const circuit = new FleetCircuit('model', policy, link, (from: CircuitState, to: CircuitState, _next, observed) => {
    transitions.push(`${from}>${to}${observed ? ' (observed)' : ''}`);
  });
  link.reply(state);
  expect(await circuit.join()).toBe(true);
  return { circuit, transitions };
}

describe('FleetCircuit', () => {
  beforeEach(() => {
    for (const level of ['log', 'warn', 'debug'] as const) jest.spyOn(Logger.prototype, level).mockImplementation(() => undefined);
  });

  afterEach(() => {
    jest.useRealTimers();
    jest.restoreAllMocks();
  });

  it('stays on its own circuit, closed and admitting, when Redis fails at the join', async () => {
    const link = new ScriptedLink().reply(new Error('ECONNREFUSED'));
    const circuit = new FleetCircuit('model', POLICY, link);
    expect(await circuit.join()).toBe(false);
    expect(circuit.scope).toBe('replica');
    expect(circuit.admit(NOW)).toMatchObject({ trial: false });
  });

  it('leaves the fleet when a failure cannot be told, counting that failure nowhere, and serves from its own circuit seeded closed', async () => {
    const link = new ScriptedLink();
    const { circuit } = await joined(link, fleetState({ failures: 1 }));
    const ticket = circuit.admit(NOW);
    link.reply(new Error('the failure script failed: no answer within 500 ms'));
    await circuit.settle(ticket as never, FAILURE, NOW);
    expect(circuit.scope).toBe('replica');
    // Seeded with the fleet's last count: one more failure of its own reaches the threshold of 2.
    expect(circuit.failures).toBe(1);
    const own = circuit.admit(NOW);
    await circuit.settle(own as never, FAILURE, NOW);
    expect(circuit.state(NOW)).toBe('open');
  });

  it('asks for the trial once per replica while the request is pending, and takes its own trial when Redis fails then', async () => {
    const link = new ScriptedLink();
    const { circuit } = await joined(link, fleetState({ phase: 'open', generation: 1, openedAt: NOW - 10_000, openUntil: NOW }));
    let answer!: (state: FleetState) => void;
    jest.spyOn(link, 'run').mockImplementationOnce(() => new Promise((resolve) => (answer = resolve)));
    const asking = circuit.admit(NOW);
    expect(asking).toBeInstanceOf(Promise);
    // Meanwhile this replica's other requests are refused without asking again.
    expect(circuit.admit(NOW)).toBeUndefined();
    answer(
      fleetState({
        version: 2,
        phase: 'half_open',
        generation: 2,
        leased: true,
        leaseUntil: NOW + 2000,
        by: 'me',
        granted: true,
        changed: true,
      }),
    );
    expect(await asking).toMatchObject({ trial: true, generation: 2 });

    link.reply(new Error('Redis is unavailable'));
    await circuit.settle((await asking)!, { kind: 'success' }, NOW);
    // Its trial's outcome could not be told: its own circuit takes over, seeded half-open, its trial still leased:
    // its own trial waits for that lease to run out.
    expect(circuit.scope).toBe('replica');
    expect(circuit.admit(NOW)).toBeUndefined();
    expect(circuit.admit(NOW + 2000)).toMatchObject({ trial: true });
  });

  describe('renewing the lease of the trial it holds', () => {
    const half = fleetState({ phase: 'half_open', generation: 3 });
    const leased = (version: number, granted = true) =>
      fleetState({ version, phase: 'half_open', generation: 3, leased: true, leaseUntil: NOW + 2000, by: 'me', granted });
    const renewals = (link: ScriptedLink) => link.calls.filter((call) => call.script === 'renew');

    async function holdingTrial(leaseRenewMs = 500) {
      jest.useFakeTimers();
      const link = new ScriptedLink();
      const { circuit } = await joined(link, half, { ...POLICY, leaseRenewMs });
      link.reply(leased(2));
      const ticket = (await circuit.admit(NOW)) as Ticket & { token: string };
      expect(ticket).toMatchObject({ trial: true, generation: 3 });
      return { link, circuit, ticket };
    }

    it('renews while the call runs, and stops once its outcome is told', async () => {
      const { link, circuit, ticket } = await holdingTrial();
      link.reply(leased(3), leased(4));
      await jest.advanceTimersByTimeAsync(1000);
      expect(renewals(link)).toEqual([
        { script: 'renew', args: { generation: 3, token: ticket.token, leaseMs: 2000 } },
        { script: 'renew', args: { generation: 3, token: ticket.token, leaseMs: 2000 } },
      ]);
      link.reply(fleetState({ version: 5, generation: 4, by: 'me', changed: true }));
      await circuit.settle(ticket, { kind: 'success' }, NOW);
      expect(circuit.state(NOW)).toBe('closed');
      expect(jest.getTimerCount()).toBe(0);
      await jest.advanceTimersByTimeAsync(5000);
      expect(renewals(link)).toHaveLength(2);
    });

    it('stops once the script says the lease is no longer its own (ran out, or went elsewhere)', async () => {
      const { link } = await holdingTrial();
      link.reply(leased(3, false));
      await jest.advanceTimersByTimeAsync(500);
      expect(renewals(link)).toHaveLength(1);
      expect(jest.getTimerCount()).toBe(0);
    });

    it('renews nothing while out of the fleet, and again once back, for a trial still running', async () => {
      const { link, circuit } = await holdingTrial();
      link.reply(new Error('Redis is unavailable'));
      await jest.advanceTimersByTimeAsync(500);
      expect(circuit.scope).toBe('replica');
      await jest.advanceTimersByTimeAsync(2000);
      expect(renewals(link)).toHaveLength(1);

      link.reply(leased(3), leased(4));
      expect(await circuit.join()).toBe(true);
      await jest.advanceTimersByTimeAsync(500);
      expect(renewals(link)).toHaveLength(2);
    });

    it('gives back, once Redis answers again, the lease of a trial that ended while out of the fleet, and renews it no more', async () => {
      const { link, circuit, ticket } = await holdingTrial();
      link.reply(new Error('Redis is unavailable'));
      await jest.advanceTimersByTimeAsync(500);
      expect(circuit.scope).toBe('replica');
      await circuit.settle(ticket, { kind: 'success' }, NOW);
      expect(jest.getTimerCount()).toBe(0);

      link.reply(leased(3), fleetState({ version: 4, phase: 'half_open', generation: 3, by: 'me' }));
      expect(await circuit.join()).toBe(true);
      await jest.advanceTimersByTimeAsync(5000);
      expect(link.calls.slice(-2)).toEqual([
        expect.objectContaining({ script: 'join' }),
        { script: 'trial', args: { generation: -1, token: ticket.token, outcome: 'abandoned' } },
      ]);
      expect(renewals(link)).toHaveLength(1);
    });

    it('gives the trial back at shutdown and renews nothing after; with renewal off, renews nothing at all', async () => {
      const { link, circuit } = await holdingTrial();
      link.reply(undefined);
      circuit.shutdown(NOW);
      expect(jest.getTimerCount()).toBe(0);
      await jest.advanceTimersByTimeAsync(10_000);
      expect(link.calls.map((call) => call.script)).toEqual(['join', 'acquire', 'trial']);

      const off = await holdingTrial(0);
      expect(jest.getTimerCount()).toBe(0);
      await jest.advanceTimersByTimeAsync(10_000);
      expect(renewals(off.link)).toHaveLength(0);
    });
  });

  it('gives back at once a trial lease granted after it left the fleet (nobody here runs that trial), and keeps it for the rejoin if Redis refuses', async () => {
    for (const releaseFails of [false, true]) {
      const link = new ScriptedLink();
      const { circuit } = await joined(link, fleetState({ phase: 'open', generation: 1, openedAt: NOW - 10_000, openUntil: NOW }));
      let answer!: (state: FleetState) => void;
      jest.spyOn(link, 'run').mockImplementationOnce(() => new Promise((resolve) => (answer = resolve)));
      const asking = circuit.admit(NOW);
      circuit.leave('not subscribed to its changes');
      link.reply(releaseFails ? new Error('Redis is unavailable') : undefined);
      answer(fleetState({ version: 2, phase: 'half_open', generation: 2, leased: true, leaseUntil: NOW + 2000, by: 'me', granted: true }));
      await asking;
      await Promise.resolve();
      // The scripted acquire is not in `calls`; its token is this replica's first lease.
      const token = 'me:1';
      expect(link.calls.map((c) => c.script)).toEqual(['join', 'trial']);
      const release = { script: 'trial', args: { generation: -1, token, outcome: 'abandoned' } };
      expect(link.calls[1]).toEqual(release);
      // Back in the fleet, a lease Redis did not take back is given back again.
      link.reply(fleetState({ version: 3, phase: 'half_open', generation: 2 }), undefined);
      expect(await circuit.join()).toBe(true);
      expect(link.calls.slice(2)).toEqual([
        { script: 'join', args: expect.objectContaining({ openForMs: 0 }) },
        ...(releaseFails ? [release] : []),
      ]);
    }
  });

  it('falls back to its own circuit when asking for the trial fails, and takes the trial there', async () => {
    const link = new ScriptedLink();
    const { circuit } = await joined(link, fleetState({ phase: 'half_open', generation: 2 }));
    link.reply(new Error('Redis is unavailable'));
    expect(await circuit.admit(NOW)).toMatchObject({ trial: true });
    expect(circuit.scope).toBe('replica');
  });

  it('refuses while the fleet is open and after shutdown, telling Redis nothing', async () => {
    const link = new ScriptedLink();
    const { circuit } = await joined(link, fleetState({ phase: 'open', generation: 1, openedAt: NOW, openUntil: NOW + 5000 }));
    expect(circuit.admit(NOW + 4999)).toBeUndefined();
    expect(circuit.openWindow(NOW)).toEqual({ openedAt: NOW, nextAttemptAt: NOW + 5000 });
    expect(circuit.state(NOW + 5000)).toBe('half_open');
    circuit.shutdown(NOW);
    expect(circuit.admit(NOW + 6000)).toBeUndefined();
    expect(await circuit.join()).toBe(false);
    expect(link.calls.map((call) => call.script)).toEqual(['join']);
  });

  it('follows published changes newer than its own, logs those another replica made as observed, and keeps the newest heard while joining', async () => {
    const link = new ScriptedLink();
    const { circuit, transitions } = await joined(link, fleetState({ version: 5 }));
    circuit.hear(fleetState({ version: 4, phase: 'open', openUntil: NOW + 1000 }));
    expect(circuit.state(NOW)).toBe('closed');
    circuit.hear(fleetState({ version: 6, generation: 1, phase: 'open', openedAt: NOW, openUntil: NOW + 1000, failures: 2 }));
    expect(circuit.state(NOW)).toBe('open');
    expect(circuit.failures).toBe(2);
    expect(transitions).toEqual(['closed>open (observed)']);

    // Joining again: a change published while the join's reply is on its way is followed after it, when newer.
    circuit.leave('test');
    let answer!: (state: FleetState) => void;
    jest.spyOn(link, 'run').mockImplementationOnce(() => new Promise((resolve) => (answer = resolve)));
    const joining = circuit.join();
    circuit.hear(fleetState({ version: 9, generation: 3, phase: 'closed' }));
    circuit.hear(fleetState({ version: 8, generation: 2, phase: 'half_open' }));
    answer(fleetState({ version: 7, generation: 1, phase: 'open', openedAt: NOW, openUntil: NOW + 1000 }));
    expect(await joining).toBe(true);
    expect(circuit.state(NOW)).toBe('closed');
  });

  it("tells the fleet a success off the caller's path and a request-specific rejection not at all", async () => {
    const link = new ScriptedLink();
    const { circuit } = await joined(link);
    const ticket = circuit.admit(NOW)!;
    link.reply(undefined);
    expect(circuit.settle(ticket as never, { kind: 'success' }, NOW)).toBeUndefined();
    expect(circuit.settle(ticket as never, { kind: 'rejected' }, NOW)).toBeUndefined();
    await circuit.flush();
    expect(link.calls.map((call) => call.script)).toEqual(['join', 'success']);
    expect(circuit.scope).toBe('fleet');
  });
});
