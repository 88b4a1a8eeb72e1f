import type { FailureVerdict } from '../circuit-breaker/circuit-breaker.js';
import { BulkheadFullError, CallTimeoutError, CircuitOpenError, StreamStalledError } from '../circuit-breaker/circuit-breaker.errors.js';

/** Neither HF_TOKEN nor HF_ENDPOINT_URL is set: no call is made. Not the upstream's fault; does not trip the breaker. */
export class ModelUnconfiguredError extends Error {
  constructor() {
    super('No model is configured: set HF_TOKEN (HF Inference Providers) or HF_ENDPOINT_URL (a TGI / OpenAI-compatible endpoint)');
    this.name = 'ModelUnconfiguredError';
  }
}

export type ModelFailureKind = 'timeout' | 'network' | 'http' | 'protocol';

/** The model could not answer for a reason that would hit any request alike; trips the breaker. */
export class ModelCallFailedError extends Error {
  constructor(
    readonly kind: ModelFailureKind,
    message: string,
    /** HTTP status from the upstream, when it answered at all. */
    readonly status?: number,
    /** The upstream's own wait hint (Retry-After, the Hub's `ratelimit` header, `estimated_time`). */
    readonly retryAfterSeconds?: number,
    /**
     * Every request fails alike until someone acts (credentials, credits, an unknown model, a model without a
     * chat template, HF_MAX_NEW_TOKENS over the model's limit): no point waiting for the threshold.
     */
    readonly affectsEveryRequest = false,
  ) {
    super(message);
    this.name = 'ModelCallFailedError';
  }

  /** A 429 or 503 that says how long to wait: the upstream is shedding load, not broken. */
  get isRateLimited(): boolean {
    return (this.status === 429 || this.status === 503) && this.retryAfterSeconds !== undefined;
  }
}

/** The upstream rejected this particular request (400, 413, 422): the prompt is at fault, not the model. */
export class ModelRequestRejectedError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ModelRequestRejectedError';
  }
}

/** This replica's own resources ran out: file descriptors (EMFILE, ENFILE), socket buffers, local ports, memory. */
export type LocalResourceCode = 'EMFILE' | 'ENFILE' | 'ENOBUFS' | 'EADDRNOTAVAIL' | 'ENOMEM' | 'ERR_MEMORY_ALLOCATION_FAILED';

/** The call failed on this replica before the model could answer: not the model's failure, so it does not count. */
export class LocalResourceError extends Error {
  constructor(
    readonly code: LocalResourceCode,
    message: string,
  ) {
    super(message);
    this.name = 'LocalResourceError';
  }
}

/**
 * What an error says to the breaker: a request-specific rejection or a missing configuration does not count, nor
 * does this replica's own shortage (`local`); a wait hint holds the circuit open that long; a failure that hits every
 * request opens it at once; anything else counts toward the threshold.
 */
export function modelFailureVerdict(error: unknown): FailureVerdict {
  if (error instanceof LocalResourceError) return { counts: false, local: true };
  if (error instanceof ModelRequestRejectedError || error instanceof ModelUnconfiguredError) return { counts: false };
  if (!(error instanceof ModelCallFailedError)) return { counts: true };
  const { kind, status, retryAfterSeconds } = error;
  return {
    counts: true,
    kind,
    ...(status !== undefined ? { status } : {}),
    ...(error.affectsEveryRequest ? { opensAtOnce: true } : {}),
    ...(error.isRateLimited && retryAfterSeconds !== undefined ? { holdOpenMs: retryAfterSeconds * 1000 } : {}),
  };
}

/** Why a target gave no answer and the request passed it over (the contract's `failover[].reason`, and more). */
export type PassReason =
  'circuit_open' | 'upstream_error' | 'timeout' | 'rate_limited' | 'overloaded' | 'rejected' | 'upstream_unconfigured';

/**
 * What the error a guarded call threw says to the caller: the same classification modelFailureVerdict gives the
 * breaker, read for the request. The breaker's own refusals and time-outs are known by their classes.
 */
export function passReasonOf(error: unknown): PassReason {
  if (error instanceof CircuitOpenError) return 'circuit_open';
  if (error instanceof BulkheadFullError) return 'overloaded';
  if (error instanceof ModelUnconfiguredError) return 'upstream_unconfigured';
  if (error instanceof ModelRequestRejectedError) return 'rejected';
  if (error instanceof CallTimeoutError || error instanceof StreamStalledError) return 'timeout';
  if (!(error instanceof ModelCallFailedError)) return 'upstream_error';
  if (error.kind === 'timeout') return 'timeout';
  return error.isRateLimited ? 'rate_limited' : 'upstream_error';
}
