import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import type { InstanceWrapper } from '@nestjs/core/injector/instance-wrapper.js';
import { REQUEST_SCOPED_NOT_SUPPORTED, SIGNAL_PARAMETER_REQUIRED, CIRCUIT_BREAKER_METADATA } from './circuit-breaker.constants.js';
import type { UseCircuitBreakerOptions } from './circuit-breaker.decorator.js';
import { CircuitBreakerRegistry } from './circuit-breaker.registry.js';

type AsyncMethod = (...args: unknown[]) => Promise<unknown>;

/** Finds @UseCircuitBreaker() provider methods at bootstrap and replaces each with a breaker interceptor. */
@Injectable()
export class CircuitBreakerExplorer implements OnModuleInit {
  private readonly logger = new Logger(CircuitBreakerExplorer.name);

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    private readonly registry: CircuitBreakerRegistry,
  ) {}

  onModuleInit(): void {
    for (const wrapper of this.discovery.getProviders()) this.explore(wrapper);
  }

  private explore(wrapper: InstanceWrapper): void {
    const instance: unknown = wrapper.instance;
    if (!instance || typeof instance !== 'object') return;
    const prototype: object | null = Object.getPrototypeOf(instance);
    if (!prototype) return;
    for (const methodName of this.scanner.getAllMethodNames(prototype)) {
      const method = (instance as Record<string, unknown>)[methodName];
      if (typeof method !== 'function') continue;
      const options = this.reflector.get<UseCircuitBreakerOptions | undefined>(CIRCUIT_BREAKER_METADATA, method);
      if (!options) continue;
      const target = `${wrapper.name?.toString() ?? prototype.constructor.name}.${methodName}`;
      if (!wrapper.isDependencyTreeStatic()) {
        this.logger.warn(REQUEST_SCOPED_NOT_SUPPORTED(target));
        continue;
      }
      (instance as Record<string, unknown>)[methodName] = this.intercept(instance, method as AsyncMethod, options, target);
    }
  }

  private intercept(instance: object, original: AsyncMethod, options: UseCircuitBreakerOptions, target: string): AsyncMethod {
    const signalIndex = original.length - 1;
    if (signalIndex < 0) throw new Error(SIGNAL_PARAMETER_REQUIRED(target));
    const breaker = this.registry.get(options.name ?? this.registry.defaultName);
    const guarded = { isFailure: options.isFailure };
    const circuitBreakerInterceptor: AsyncMethod = (...args) =>
      breaker.fire((signal) => {
        const callArgs = [...args];
        callArgs[signalIndex] = signal;
        return original.apply(instance, callArgs);
      }, guarded);
    // Keep the original's name and metadata so other decorators on the method still find theirs.
    Object.defineProperty(circuitBreakerInterceptor, 'name', { value: original.name });
    for (const key of Reflect.getMetadataKeys(original)) {
      Reflect.defineMetadata(key, Reflect.getMetadata(key, original), circuitBreakerInterceptor);
    }
    return circuitBreakerInterceptor;
  }
}
