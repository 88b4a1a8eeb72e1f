import type { ConfigType } from '@nestjs/config';
import type { circuitBreakerConfig } from '../../src/config/circuit-breaker.config.js';

/** The breaker configuration the circuit-breaker unit suites start from: threshold 2, time-out 1 s, reset 10 s. */
export const TEST_BREAKER_CONFIG: ConfigType<typeof circuitBreakerConfig> = {
  enabled: true,
  name: 'huggingface',
  failureThreshold: 2,
  timeoutMs: 1_000,
  resetTimeoutMs: 10_000,
  maxOpenMs: 300_000,
  resetBackoff: 1,
  maxConcurrent: 100,
  failureRate: 0,
  windowMs: 30_000,
  minCalls: 20,
  streamIdleTimeoutMs: 1_000,
  shared: false,
};
