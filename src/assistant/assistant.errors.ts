import type { CircuitState } from '../circuit-breaker/circuit-breaker.js';

export const FALLBACK_REASONS = [
  'circuit_open',
  'upstream_error',
  'timeout',
  'rate_limited',
  'overloaded',
  'upstream_unconfigured',
] as const;
export type FallbackReason = (typeof FALLBACK_REASONS)[number];

export interface CircuitStatus {
  name: string;
  state: CircuitState;
}

/** The model is unavailable and nothing is left to answer from: 503 with Retry-After. */
export class UpstreamUnavailableError extends Error {
  constructor(
    readonly reason: FallbackReason,
    readonly retryAfterSeconds: number,
    readonly circuit: CircuitStatus,
  ) {
    super('The model is unavailable and there is no cached answer or knowledge-base excerpt for this question; retry later');
    this.name = 'UpstreamUnavailableError';
  }
}
