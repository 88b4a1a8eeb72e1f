import { registerAs } from '@nestjs/config';
import { environment } from './environment.js';

export const circuitBreakerConfig = registerAs('circuitBreaker', () => {
  const env = environment();
  return {
    enabled: env.CIRCUIT_BREAKER_ENABLED,
    /** The breaker guarding generation; `@UseCircuitBreaker()` without a name means this one. */
    name: env.CIRCUIT_BREAKER_NAME,
    failureThreshold: env.CIRCUIT_BREAKER_FAIL_THRESHOLD,
    /** Per-call limit; never longer than the request's deadline (ASSISTANT_DEADLINE_SECONDS), which no call outlives. */
    timeoutMs: Math.round(Math.min(env.CIRCUIT_BREAKER_TIMEOUT_SECONDS, env.ASSISTANT_DEADLINE_SECONDS) * 1000),
    resetTimeoutMs: Math.round(env.CIRCUIT_BREAKER_RESET_TIMEOUT * 1000),
    maxOpenMs: Math.round(env.CIRCUIT_BREAKER_MAX_OPEN_SECONDS * 1000),
    resetBackoff: env.CIRCUIT_BREAKER_RESET_BACKOFF,
    maxConcurrent: env.CIRCUIT_BREAKER_MAX_CONCURRENT,
    /** The failure-rate policy beside the consecutive threshold; rate 0 = off. */
    failureRate: env.CIRCUIT_BREAKER_FAILURE_RATE,
    windowMs: Math.round(env.CIRCUIT_BREAKER_WINDOW_SECONDS * 1000),
    minCalls: env.CIRCUIT_BREAKER_MIN_CALLS,
    /** A streamed call's longest gap between two items after the first: the model's tokens (HF_STREAM_IDLE_TIMEOUT_SECONDS). */
    streamIdleTimeoutMs: Math.round(env.HF_STREAM_IDLE_TIMEOUT_SECONDS * 1000),
    /** One circuit per breaker name for every replica sharing REDIS_URL (CIRCUIT_BREAKER_SHARED, with REDIS_URL). */
    shared: env.CIRCUIT_BREAKER_SHARED && env.REDIS_URL !== undefined,
  };
});
