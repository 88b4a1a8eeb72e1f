export const CIRCUIT_BREAKER_METADATA = 'CIRCUIT_BREAKER:METADATA';

export const NO_BREAKER = (name: string) => `No circuit breaker named "${name}" is registered`;
export const DUPLICATE_BREAKER = (name: string) => `A circuit breaker named "${name}" is already registered`;
export const SIGNAL_PARAMETER_REQUIRED = (target: string) =>
  `${target} is decorated with @UseCircuitBreaker() but declares no parameters; its last parameter receives the call's AbortSignal`;
export const REQUEST_SCOPED_NOT_SUPPORTED = (target: string) =>
  `@UseCircuitBreaker() on ${target} is ignored: the provider is request-scoped and cannot be wrapped at bootstrap`;

/** Optional provider: the clock the fleet's circuit scripts use instead of Redis' TIME (tests that drive time). */
export const CIRCUIT_CLOCK = Symbol('CIRCUIT_CLOCK');
