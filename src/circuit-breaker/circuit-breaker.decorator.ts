import { SetMetadata } from '@nestjs/common';
import { CIRCUIT_BREAKER_METADATA } from './circuit-breaker.constants.js';
import type { FailureVerdict } from './circuit-breaker.js';

export interface UseCircuitBreakerOptions {
  /** Registered breaker name; the configured one (`CIRCUIT_BREAKER_NAME`) when omitted. */
  name?: string;
  /** What each error says about the upstream (see FailureVerdict); every error is a failure when omitted. */
  classify?: (error: unknown) => FailureVerdict;
  /**
   * The method resolves to an AsyncIterable (a stream): it then runs through `fireStream`, so the time-out bounds the
   * time to its first item and the stream idle time-out each gap after it, and the call ends when the stream does.
   */
  stream?: boolean;
}

/**
 * Puts a provider method behind a circuit breaker. Only records metadata: CircuitBreakerExplorer wraps
 * the method at bootstrap. The method's last parameter receives the call's AbortSignal (aborted at the
 * breaker's time-out, or when the caller's own signal passed there aborts), so declare it
 * (`signal?: AbortSignal`) and pass it on to the I/O.
 */
export const UseCircuitBreaker = (options: UseCircuitBreakerOptions = {}): MethodDecorator =>
  SetMetadata(CIRCUIT_BREAKER_METADATA, options);
