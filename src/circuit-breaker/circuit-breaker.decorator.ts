import { SetMetadata } from '@nestjs/common';
import { CIRCUIT_BREAKER_METADATA } from './circuit-breaker.constants.js';

export interface UseCircuitBreakerOptions {
  /** Registered breaker name; the configured one (`CIRCUIT_BREAKER_NAME`) when omitted. */
  name?: string;
  /** Which errors count against the upstream; every error does when omitted. */
  isFailure?: (error: unknown) => boolean;
}

/**
 * Puts a provider method behind a circuit breaker. Only records metadata: CircuitBreakerExplorer wraps
 * the method at bootstrap. The method's last parameter receives the call's AbortSignal (aborted at the
 * breaker's time-out, or when the caller's own signal passed there aborts), so declare it
 * (`signal?: AbortSignal`) and pass it on to the I/O.
 */
export const UseCircuitBreaker = (options: UseCircuitBreakerOptions = {}): MethodDecorator =>
  SetMetadata(CIRCUIT_BREAKER_METADATA, options);
