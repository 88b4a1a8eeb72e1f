import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { CircuitContractModel, type ModelConfig, type ModelOutcome } from '../../test/support/circuit-contract-model.js';
import { propertyRunParameters } from '../../test/support/fast-check-replay.js';
import { type CallOutcome, CircuitStateMachine, type Ticket } from './circuit-state.js';

// The replica's own circuit against the reference model written from the contract alone
// (test/support/circuit-contract-model.ts): random admissions, outcomes of every kind and clock steps, the
// failure-rate policy on or off. After every step the circuit's admission, state and consecutive failures must be
// the model's. Replay a failure with the seed and path fast-check prints: FC_SEED=<seed> FC_PATH=<path> npm run test:unit

type Step = { t: 'admit' } | { t: 'settle'; pick: number; outcome: ModelOutcome } | { t: 'tick'; ms: number };

const outcomes: fc.Arbitrary<ModelOutcome> = fc.oneof(
  fc.constantFrom<ModelOutcome>({ kind: 'success' }, { kind: 'failure' }, { kind: 'failure' }, { kind: 'rejected' }, { kind: 'abandoned' }),
  fc.constant<ModelOutcome>({ kind: 'fatal' }),
  fc.integer({ min: 1, max: 6 }).map<ModelOutcome>((seconds) => ({ kind: 'hint', holdMs: seconds * 1000 })),
);

const steps: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.constant<Step>({ t: 'admit' }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('settle' as const), pick: fc.nat(), outcome: outcomes }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 4000 }) }) },
);

const configs: fc.Arbitrary<ModelConfig> = fc.record({
  failureThreshold: fc.integer({ min: 1, max: 5 }),
  resetTimeoutMs: fc.constantFrom(1000, 2000),
  maxOpenMs: fc.constantFrom(3000, 300_000),
  resetBackoff: fc.constantFrom(1, 2),
  failureRate: fc.constantFrom(0, 0, 0.5, 1),
  windowMs: fc.constantFrom(2000, 10_000),
  minCalls: fc.integer({ min: 1, max: 6 }),
  // The replica's own circuit holds its trial until the trial's outcome: a lease that never runs out.
  leaseMs: fc.constant(Number.POSITIVE_INFINITY),
});

function callOutcome(outcome: ModelOutcome, at: number): CallOutcome {
  const cause = { kind: 'http', status: 500, at };
  switch (outcome.kind) {
    case 'fatal':
      return { kind: 'failure', cause, opensAtOnce: true };
    case 'hint':
      return { kind: 'failure', cause, holdOpenMs: outcome.holdMs };
    case 'failure':
      return { kind: 'failure', cause };
    default:
      return { kind: outcome.kind };
  }
}

describe("the replica's own circuit against the contract's reference model", () => {
  it('admits, refuses, opens, closes and counts failures as the contract says, at every step', () => {
    fc.assert(
      fc.property(configs, fc.array(steps, { minLength: 1, maxLength: 60 }), (config, script) => {
        let now = 1_000_000;
        const circuit = new CircuitStateMachine(config, undefined, () => 0.5);
        const model = new CircuitContractModel(config, [true]);
        const tickets = new Map<number, Ticket>();
        let nextId = 0;
        for (const [i, step] of script.entries()) {
          const where = `step ${i}: ${JSON.stringify(step)}`;
          if (step.t === 'admit') {
            const id = nextId++;
            const ticket = circuit.admit(now);
            const admission = ticket === undefined ? 'refused' : ticket.trial ? 'trial' : 'call';
            expect({ where, admission }).toEqual({ where, admission: model.admit(id, 0, now) });
            if (ticket) tickets.set(id, ticket);
          } else if (step.t === 'settle') {
            const pending = model.pending();
            const call = pending[step.pick % Math.max(1, pending.length)];
            if (call) {
              circuit.settle(tickets.get(call.id)!, callOutcome(step.outcome, now), now);
              model.settle(call.id, step.outcome, now, 0.5);
              tickets.delete(call.id);
            }
          } else {
            now += step.ms;
          }
          expect({ where, state: circuit.state(now), failures: circuit.failures }).toEqual({
            where,
            state: model.state(now),
            failures: model.failures,
          });
        }
      }),
      propertyRunParameters(2000),
    );
  });
});
