export { CircuitBreaker, type CircuitBreakerSnapshot, type CircuitState, type FailureVerdict } from './circuit-breaker.js';
export { UseCircuitBreaker, type UseCircuitBreakerOptions } from './circuit-breaker.decorator.js';
export { BulkheadFullError, CallTimeoutError, CircuitOpenError } from './circuit-breaker.errors.js';
export { CircuitBreakerHealthIndicator } from './circuit-breaker.health.js';
export { CircuitBreakerModule } from './circuit-breaker.module.js';
export { CircuitBreakerRegistry } from './circuit-breaker.registry.js';
