import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { circuitBreakerConfig } from '../config/circuit-breaker.config.js';
import { CircuitBreakerHealthIndicator } from './circuit-breaker.health.js';
import { CircuitBreakerModule } from './circuit-breaker.module.js';
import { CircuitBreakerRegistry } from './circuit-breaker.registry.js';
import type { CircuitBreaker } from './circuit-breaker.js';
import { TEST_BREAKER_CONFIG } from '../../test/support/breaker-config.js';

const CONFIG = TEST_BREAKER_CONFIG;
const START = new Date('2030-01-01T00:00:00.000Z');

const fail = () => Promise.reject(new Error('upstream down'));
const ok = () => Promise.resolve('ok');

describe('CircuitBreakerHealthIndicator', () => {
  let moduleRef: TestingModule;
  let indicator: CircuitBreakerHealthIndicator;
  let registry: CircuitBreakerRegistry;
  let breaker: CircuitBreaker;

  async function open(target: CircuitBreaker): Promise<void> {
    for (let i = 0; i < CONFIG.failureThreshold; i++) await expect(target.fire(fail)).rejects.toThrow('upstream down');
    expect(target.state).toBe('open');
  }

  beforeEach(async () => {
    jest.useFakeTimers({ now: START });
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    moduleRef = await Test.createTestingModule({ imports: [CircuitBreakerModule] })
      .overrideProvider(circuitBreakerConfig.KEY)
      .useValue(CONFIG)
      .compile();
    await moduleRef.init();
    indicator = moduleRef.get(CircuitBreakerHealthIndicator);
    registry = moduleRef.get(CircuitBreakerRegistry);
    breaker = registry.get('huggingface');
  });

  afterEach(async () => {
    await moduleRef.close();
    jest.restoreAllMocks();
    jest.useRealTimers();
  });

  it('reports a closed breaker up, with its state, consecutive failures and stats', async () => {
    await breaker.fire(ok);
    await expect(breaker.fire(fail)).rejects.toThrow();
    const result = indicator.isHealthy('huggingface');
    expect(result).toEqual({
      huggingface: {
        status: 'up',
        state: 'closed',
        scope: 'replica',
        enabled: true,
        failures: 1,
        failureThreshold: 2,
        lastFailure: { kind: 'error', at: '2030-01-01T00:00:00.000Z' },
        inFlight: 0,
        maxConcurrent: 100,
        stats: { successes: 1, failures: 1, timeouts: 0, rejects: 0, overloaded: 0, fallbacks: 0 },
      },
    });
  });

  it('reports an open breaker down, with when it opened and when its trial is due', async () => {
    await jest.advanceTimersByTimeAsync(2_000);
    await open(breaker);
    await expect(breaker.fire(ok)).rejects.toThrow();
    breaker.recordFallback();
    expect(indicator.isHealthy('huggingface')).toEqual({
      huggingface: {
        status: 'down',
        state: 'open',
        scope: 'replica',
        enabled: true,
        failures: 2,
        failureThreshold: 2,
        openedAt: '2030-01-01T00:00:02.000Z',
        nextAttemptAt: '2030-01-01T00:00:12.000Z',
        lastFailure: { kind: 'error', at: '2030-01-01T00:00:02.000Z' },
        inFlight: 0,
        maxConcurrent: 100,
        stats: { successes: 0, failures: 2, timeouts: 0, rejects: 1, overloaded: 0, fallbacks: 1 },
      },
    });
  });

  it('reports a half-open breaker up again', async () => {
    await open(breaker);
    await jest.advanceTimersByTimeAsync(10_000);
    const entry = indicator.isHealthy('huggingface').huggingface;
    expect(entry).toMatchObject({ status: 'up', state: 'half_open' });
    expect(entry).not.toHaveProperty('openedAt');
  });

  it('reports up again once a successful trial has closed the circuit', async () => {
    await open(breaker);
    await jest.advanceTimersByTimeAsync(10_000);
    await breaker.fire(ok);
    expect(indicator.isHealthy('huggingface').huggingface).toMatchObject({ status: 'up', state: 'closed', failures: 0 });
  });

  it('offers one check per registered breaker, each keyed by its name and judged on its own', async () => {
    const search = registry.add('search');
    await open(search);
    const results = indicator.checks().map((check) => check());
    expect(results).toHaveLength(2);
    expect(results[0]?.huggingface).toMatchObject({ status: 'up', state: 'closed' });
    expect(results[1]?.search).toMatchObject({ status: 'down', state: 'open' });
  });
});
