import type { CallOutcome } from '../../src/circuit-breaker/circuit-state.js';
import type { ModelOutcome } from './circuit-contract-model.js';

/** The circuit's own outcome for what the reference model calls `outcome`, settled at `at`. */
export function callOutcome(outcome: ModelOutcome, at: number): CallOutcome {
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
