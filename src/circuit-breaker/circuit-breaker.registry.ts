import { Inject, Injectable, OnApplicationShutdown, Optional } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { circuitBreakerConfig } from '../config/circuit-breaker.config.js';
import { CircuitBreaker, type CircuitBreakerOptions, type CircuitFactory } from './circuit-breaker.js';
import { DUPLICATE_BREAKER, NO_BREAKER } from './circuit-breaker.constants.js';
import { decoratedMethods, guardMethod, methodNamesOf } from './circuit-breaker.guard.js';
import { SharedCircuitStore } from './fleet/shared-circuit-store.js';

/**
 * Named breakers, one per name, built from config; the configured one exists from the start. With
 * CIRCUIT_BREAKER_SHARED and REDIS_URL each breaker's circuit is the fleet's (one per name for every replica).
 */
@Injectable()
export class CircuitBreakerRegistry implements OnApplicationShutdown {
  private readonly breakers = new Map<string, CircuitBreaker>();
  private readonly createCircuit?: CircuitFactory;

  constructor(
    @Inject(circuitBreakerConfig.KEY) private readonly config: ConfigType<typeof circuitBreakerConfig>,
    @Optional() fleet?: SharedCircuitStore,
  ) {
    if (fleet?.enabled) this.createCircuit = (name, policy, onTransition, random) => fleet.circuit(name, policy, onTransition, random);
    this.add(config.name);
  }

  /** The breaker guarding generation (`CIRCUIT_BREAKER_NAME`). */
  get defaultName(): string {
    return this.config.name;
  }

  add(name: string, overrides: Partial<CircuitBreakerOptions> = {}): CircuitBreaker {
    if (this.breakers.has(name)) throw new Error(DUPLICATE_BREAKER(name));
    const { name: _name, shared: _shared, ...options } = this.config;
    const breaker = new CircuitBreaker(name, { ...options, ...overrides }, Math.random, this.createCircuit);
    this.breakers.set(name, breaker);
    return breaker;
  }

  /**
   * Puts every @UseCircuitBreaker() method of `instance` behind the breaker `name` (added when it is new), whatever
   * name the decorator gives: for instances built from config, one per target, each with a breaker of its own.
   */
  guard<T extends object>(instance: T, name: string): T {
    const breaker = this.breakers.get(name) ?? this.add(name);
    for (const method of decoratedMethods(instance, methodNamesOf(instance))) {
      guardMethod(instance, method, breaker, `${instance.constructor.name}.${method.methodName} (breaker "${name}")`);
    }
    return instance;
  }

  get(name: string): CircuitBreaker {
    const breaker = this.breakers.get(name);
    if (!breaker) throw new Error(NO_BREAKER(name));
    return breaker;
  }

  getAll(): CircuitBreaker[] {
    return [...this.breakers.values()];
  }

  onApplicationShutdown(): void {
    for (const breaker of this.breakers.values()) breaker.shutdown();
  }
}
