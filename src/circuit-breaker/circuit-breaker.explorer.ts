import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import type { InstanceWrapper } from '@nestjs/core/injector/instance-wrapper.js';
import { REQUEST_SCOPED_NOT_SUPPORTED } from './circuit-breaker.constants.js';
import { decoratedMethods, guardMethod } from './circuit-breaker.guard.js';
import { CircuitBreakerRegistry } from './circuit-breaker.registry.js';

/**
 * Finds @UseCircuitBreaker() provider methods at bootstrap and replaces each with a breaker interceptor, behind the
 * breaker the decorator names. Instances built at run time (one per model target) are guarded by CircuitBreakerRegistry.guard.
 */
@Injectable()
export class CircuitBreakerExplorer implements OnModuleInit {
  private readonly logger = new Logger(CircuitBreakerExplorer.name);

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly registry: CircuitBreakerRegistry,
  ) {}

  onModuleInit(): void {
    // A provider also registered under an alias (useExisting) is listed twice; wrap it once.
    const explored = new WeakSet<object>();
    for (const wrapper of this.discovery.getProviders()) this.explore(wrapper, explored);
  }

  private explore(wrapper: InstanceWrapper, explored: WeakSet<object>): void {
    const instance: unknown = wrapper.instance;
    if (!instance || typeof instance !== 'object' || explored.has(instance)) return;
    explored.add(instance);
    const prototype = Object.getPrototypeOf(instance) as object | null;
    if (!prototype) return;
    for (const method of decoratedMethods(instance, this.scanner.getAllMethodNames(prototype))) {
      const target = `${String(wrapper.name ?? prototype.constructor.name)}.${method.methodName}`;
      if (!wrapper.isDependencyTreeStatic()) {
        this.logger.warn(REQUEST_SCOPED_NOT_SUPPORTED(target));
        continue;
      }
      guardMethod(instance, method, this.registry.get(method.options.name ?? this.registry.defaultName), target);
    }
  }
}
