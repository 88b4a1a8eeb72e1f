import type { CircuitState, FailureCause } from '../circuit-state.js';

/** The fleet's circuit as a script returned or published it; every time is Redis' clock (epoch ms). */
export interface FleetState {
  /** Set when the hash was created: a new epoch (the hash expired, was evicted or flushed) counts versions anew. */
  epoch: string;
  /** +1 on every change: a state older than the one a replica holds (in the same epoch) is ignored. */
  version: number;
  /** +1 on every state change: an outcome from an earlier generation changes nothing. */
  generation: number;
  phase: CircuitState;
  failures: number;
  failedTrials: number;
  /** While open; 0 otherwise. */
  openedAt: number;
  openUntil: number;
  /** Half-open with its trial leased, until `leaseUntil`. */
  leased: boolean;
  leaseUntil: number;
  /** The replica that made the last change. */
  by: string;
  cause?: FailureCause;
  /** Redis' clock when the script ran. */
  now: number;
  /** This script changed the state (opened, closed, turned half-open). */
  changed: boolean;
  /** This script granted the asker the trial's lease. */
  granted: boolean;
}

const PHASES: ReadonlySet<string> = new Set<CircuitState>(['closed', 'open', 'half_open']);
const FIELD_COUNT = 17;
const NUMBER_FIELDS = [0, 1, 3, 4, 5, 6, 8, 11, 12, 13];

/** Decodes the scripts' `|`-separated encoding (circuit-scripts.ts); throws on anything else. */
export function parseFleetState(encoded: unknown): FleetState {
  if (typeof encoded !== 'string') throw new Error(`unexpected circuit reply: ${typeof encoded}`);
  const parts = encoded.split('|');
  const wellFormed = parts.length === FIELD_COUNT && PHASES.has(parts[2]) && NUMBER_FIELDS.every((i) => Number.isFinite(Number(parts[i])));
  if (!wellFormed) throw new Error(`unexpected circuit reply: ${encoded}`);
  const [, , phase, , , , , , , by, causeKind] = parts;
  const n = (i: number): number => Number(parts[i]);
  const causeStatus = n(11);
  return {
    version: n(0),
    generation: n(1),
    phase: phase as CircuitState,
    failures: n(3),
    failedTrials: n(4),
    openedAt: n(5),
    openUntil: n(6),
    leased: parts[7] === '1',
    leaseUntil: n(8),
    by,
    ...(causeKind ? { cause: { kind: causeKind, ...(causeStatus > 0 ? { status: causeStatus } : {}), at: n(12) } } : {}),
    now: n(13),
    changed: parts[14] === '1',
    granted: parts[15] === '1',
    epoch: parts[16],
  };
}
