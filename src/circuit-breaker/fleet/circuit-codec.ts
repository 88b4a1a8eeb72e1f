import type { RedisScript } from '../../redis/redis-script.js';
import type { CircuitState, FailureCause } from '../circuit-state.js';

// The edge of the circuit scripts (circuit-scripts.ts). Each script takes its arguments as one JSON object (ARGV[1],
// `cjson.decode`) and replies, and publishes, the state it left as one JSON object (`cjson.encode`), decoded here
// into FleetState and nowhere else. cjson writes numbers with 14 significant digits: every integer below 10^14 (epoch
// milliseconds until the year 5138) comes back exact.

/** What every script is told besides its own arguments. */
export interface ScriptCaller {
  /** The clock (epoch ms). Absent: the script reads Redis' own (`TIME`); only tests that drive time pass one. */
  now?: number;
  /** The calling replica's id: the `by` of the changes it makes, and the epoch's suffix when it creates the hash. */
  by: string;
}

/** A failure's cause as a script records it (its time is the script's clock). */
export interface ScriptCause {
  kind: string;
  /** The upstream's HTTP status, when it answered. */
  status?: number;
}

/** `failure`: a call admitted while closed failed. */
export interface FailureArguments {
  /** The generation the call started in. */
  generation: number;
  failureThreshold: number;
  resetTimeoutMs: number;
  /** The longest open period. */
  maxOpenMs: number;
  /** The failure hits every request alike: it opens at once. */
  opensAtOnce: boolean;
  /** The upstream's wait hint: it opens at once, for that long (within maxOpenMs). */
  holdOpenMs?: number;
  cause: ScriptCause;
  /** The failure-rate policy: the rate that opens (0: off), over windowMs, once there are minCalls calls. */
  failureRate: number;
  windowMs: number;
  minCalls: number;
}

/** `success`: a call admitted while closed succeeded. */
export interface SuccessArguments {
  generation: number;
  /** The failure-rate policy (0: off) and its window: with it on, the success is one call of the window. */
  failureRate: number;
  windowMs: number;
}

/** `acquire`: asks for the half-open trial's lease. */
export interface AcquireArguments {
  /** The lease's token: this replica's id and a counter. */
  token: string;
  /** How long the lease holds. */
  leaseMs: number;
}

/** `trial`: the half-open trial's outcome; a failure re-opens for the backed-off period. */
export type TrialArguments = {
  /** The trial's generation; -1 frees a lease by its token alone (a grant that never reached its asker). */
  generation: number;
  token: string;
} & (
  | { outcome: 'success' | 'rejected' | 'abandoned' }
  | {
      outcome: 'failure';
      resetTimeoutMs: number;
      maxOpenMs: number;
      resetBackoff: number;
      /** In [0, 1): the period's jitter. */
      random: number;
      holdOpenMs?: number;
      cause: ScriptCause;
    }
);

/** `renew`: the trial's holder keeps its lease while the call runs (a long stream). */
export interface RenewArguments {
  generation: number;
  token: string;
  /** How long the lease holds from now. */
  leaseMs: number;
}

/** `join`: a replica joins (at start, or when Redis is back). */
export interface JoinArguments {
  /**
   * What its own circuit says: `closed` nothing; `opened` it opened on its own (the model failed while Redis was
   * away); `seeded` it is open as it last saw the fleet's.
   */
  own: 'closed' | 'opened' | 'seeded';
  /** How long its own circuit has still to stay open. */
  openForMs: number;
  maxOpenMs: number;
  /** The epoch it last saw ('' none). */
  epoch: string;
}

/** A circuit script, typed by the arguments it reads. Its KEYS: the circuit's hash and its channel. */
export interface CircuitScript<A extends object> extends RedisScript {
  /** ARGV[1]: the caller and the arguments, one JSON object. */
  encode(caller: ScriptCaller, args: A): string;
}

/** JSON has no Infinity or NaN: they go as strings, which the scripts' `tonumber()` reads as those numbers. */
const nonFiniteAsString = (_key: string, value: unknown): unknown =>
  typeof value === 'number' && !Number.isFinite(value) ? String(value) : value;

export function circuitScript<A extends object>(script: RedisScript): CircuitScript<A> {
  return { ...script, encode: (caller, args) => JSON.stringify({ ...caller, ...args }, nonFiniteAsString) };
}

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

const PHASES: ReadonlySet<unknown> = new Set<CircuitState>(['closed', 'open', 'half_open']);
const NUMBERS = ['version', 'generation', 'failures', 'failedTrials', 'openedAt', 'openUntil', 'leaseUntil', 'now'] as const;
const FLAGS = ['leased', 'changed', 'granted'] as const;
const TEXTS = ['epoch', 'by'] as const;

/** A script's reply: the state it left, or undefined when it changed nothing and said so (an empty reply). */
export function parseReply(reply: unknown): FleetState | undefined {
  return reply === '' ? undefined : parseFleetState(reply);
}

/**
 * Decodes the state as the scripts reply and publish it; throws on anything else. Fields it does not know are left
 * out, so a later version may add some without the replicas of this one refusing its messages.
 */
export function parseFleetState(encoded: unknown): FleetState {
  if (typeof encoded !== 'string') throw new Error(`unexpected circuit reply: ${typeof encoded}`);
  const fields = parseObject(encoded);
  const wellFormed =
    fields !== undefined &&
    PHASES.has(fields.phase) &&
    NUMBERS.every((name) => Number.isFinite(fields[name])) &&
    FLAGS.every((name) => typeof fields[name] === 'boolean') &&
    TEXTS.every((name) => typeof fields[name] === 'string') &&
    (fields.cause === undefined || isCause(fields.cause));
  if (!wellFormed) throw new Error(`unexpected circuit reply: ${encoded}`);
  const {
    epoch,
    version,
    generation,
    phase,
    failures,
    failedTrials,
    openedAt,
    openUntil,
    leased,
    leaseUntil,
    by,
    cause,
    now,
    changed,
    granted,
  } = fields as unknown as FleetState;
  return {
    epoch,
    version,
    generation,
    phase,
    failures,
    failedTrials,
    openedAt,
    openUntil,
    leased,
    leaseUntil,
    by,
    ...(cause ? { cause: { kind: cause.kind, ...(cause.status !== undefined ? { status: cause.status } : {}), at: cause.at } } : {}),
    now,
    changed,
    granted,
  };
}

function parseObject(encoded: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(encoded);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function isCause(value: unknown): value is FailureCause {
  if (typeof value !== 'object' || value === null) return false;
  const { kind, status, at } = value as Record<string, unknown>;
  return typeof kind === 'string' && kind !== '' && (status === undefined || Number.isFinite(status)) && Number.isFinite(at);
}
