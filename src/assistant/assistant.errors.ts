import type { CircuitStatus } from '../hf-textgen/model-targets.js';

export type { CircuitStatus } from '../hf-textgen/model-targets.js';

export const FALLBACK_REASONS = [
  'circuit_open',
  'upstream_error',
  'timeout',
  'rate_limited',
  'overloaded',
  'upstream_unconfigured',
  /** A streamed answer whose model stream failed or stalled after tokens were sent: the partial answer. */
  'interrupted',
] as const;
export type FallbackReason = (typeof FALLBACK_REASONS)[number];
/** What a 503 can say: an interrupted stream always has its partial answer to send. */
export const UNAVAILABLE_REASONS = FALLBACK_REASONS.filter((reason) => reason !== 'interrupted');

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
