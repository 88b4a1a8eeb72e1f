import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { CircuitOpenError } from './circuit-breaker.errors.js';
import { CircuitBreakerRegistry } from './circuit-breaker.registry.js';
import { TEST_BREAKER_CONFIG } from '../../test/support/breaker-config.js';

const CONFIG = TEST_BREAKER_CONFIG;

const fail = () => Promise.reject(new Error('upstream down'));

describe('CircuitBreakerRegistry', () => {
  let registry: CircuitBreakerRegistry;

  beforeEach(() => {
    jest.useFakeTimers();
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    registry = new CircuitBreakerRegistry(CONFIG);
  });

  afterEach(() => {
    registry.onApplicationShutdown();
    jest.restoreAllMocks();
    jest.useRealTimers();
  });

  it('holds the configured breaker from the start, under its configured name', () => {
    expect(registry.defaultName).toBe('huggingface');
    const breaker = registry.get('huggingface');
    expect(breaker.name).toBe('huggingface');
    expect(registry.getAll()).toEqual([breaker]);
  });

  it('builds the configured breaker from the config: it opens after failureThreshold failures', async () => {
    const breaker = registry.get('huggingface');
    await expect(breaker.fire(fail)).rejects.toThrow('upstream down');
    expect(breaker.state).toBe('closed');
    await expect(breaker.fire(fail)).rejects.toThrow('upstream down');
    expect(breaker.state).toBe('open');
    expect(breaker.snapshot()).toMatchObject({ enabled: true, failureThreshold: 2 });
    await jest.advanceTimersByTimeAsync(10_000);
    expect(breaker.state).toBe('half_open');
  });

  it('returns the same breaker every time it is asked for a name', () => {
    expect(registry.get('huggingface')).toBe(registry.get('huggingface'));
  });

  it('throws the NO_BREAKER message for a name never registered', () => {
    expect(() => registry.get('nope')).toThrow('No circuit breaker named "nope" is registered');
  });

  it('adds a breaker under a new name, with the config’s values unless overridden', async () => {
    const search = registry.add('search', { failureThreshold: 1 });
    expect(registry.get('search')).toBe(search);
    expect(registry.getAll()).toHaveLength(2);
    expect(search.snapshot()).toMatchObject({ name: 'search', enabled: true, failureThreshold: 1 });
    await expect(search.fire(fail)).rejects.toThrow('upstream down');
    expect(search.state).toBe('open');
    await expect(search.fire(() => Promise.resolve('x'))).rejects.toBeInstanceOf(CircuitOpenError);
    expect(registry.get('huggingface').state).toBe('closed');
  });

  it('refuses to add a second breaker under a name already registered', () => {
    const original = registry.get('huggingface');
    expect(() => registry.add('huggingface')).toThrow('A circuit breaker named "huggingface" is already registered');
    expect(registry.get('huggingface')).toBe(original);
  });

  it('shuts every breaker down on application shutdown: calls in flight end, no timer is left behind', async () => {
    registry.add('search');
    const hanging = registry.getAll().map((breaker) => breaker.fire(() => new Promise<never>(() => undefined)));
    expect(jest.getTimerCount()).toBe(2);

    registry.onApplicationShutdown();

    expect(jest.getTimerCount()).toBe(0);
    for (const call of hanging) await expect(call).rejects.toThrow(/shut down/);
    const task = jest.fn(() => Promise.resolve('x'));
    for (const breaker of registry.getAll()) await expect(breaker.fire(task)).rejects.toThrow();
    expect(task).not.toHaveBeenCalled();
  });
});
