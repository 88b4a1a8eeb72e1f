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
    for (const methodName of this.scanner.getAllMethodNames(prototype)) {
      const method = (instance as Record<string, unknown>)[methodName];
      if (typeof method !== 'function') continue;
      const options = this.reflector.get<UseCircuitBreakerOptions | undefined>(CIRCUIT_BREAKER_METADATA, method);
      if (!options) continue;
      const target = `${String(wrapper.name ?? prototype.constructor.name)}.${methodName}`;
      if (!wrapper.isDependencyTreeStatic()) {
        this.logger.warn(REQUEST_SCOPED_NOT_SUPPORTED(target));
        continue;
      }
      const signalIndex = lastParameterIndex(prototype, methodName, method as AsyncMethod);
      if (signalIndex < 0) throw new Error(SIGNAL_PARAMETER_REQUIRED(target));
      (instance as Record<string, unknown>)[methodName] = this.intercept(instance, method as AsyncMethod, signalIndex, options);
    }
  }

  private intercept(instance: object, original: AsyncMethod, signalIndex: number, options: UseCircuitBreakerOptions): AsyncMethod {
    const breaker = this.registry.get(options.name ?? this.registry.defaultName);
    const circuitBreakerInterceptor: AsyncMethod = (...args) => {
      const callerSignal = args[signalIndex];
      const task = (signal: AbortSignal) => {
        const callArgs = [...args];
        callArgs[signalIndex] = signal;
        return original.apply(instance, callArgs);
      };
      const guard = { classify: options.classify, signal: callerSignal instanceof AbortSignal ? callerSignal : undefined };
      return options.stream
        ? breaker.fireStream(task as (signal: AbortSignal) => Promise<AsyncIterable<unknown>>, guard)
        : breaker.fire(task, guard);
    };
    // Keep the original's name and metadata so other decorators on the method still find theirs.
    Object.defineProperty(circuitBreakerInterceptor, 'name', { value: original.name });
    for (const key of Reflect.getMetadataKeys(original)) {
      Reflect.defineMetadata(key, Reflect.getMetadata(key, original), circuitBreakerInterceptor);
    }
    return circuitBreakerInterceptor;
  }
}

/** The declared parameter count from emitted metadata; `Function.length` stops at the first default value. */
function lastParameterIndex(prototype: object, methodName: string, method: AsyncMethod): number {
  const parameterTypes: unknown = Reflect.getMetadata('design:paramtypes', prototype, methodName);
  return (Array.isArray(parameterTypes) ? parameterTypes.length : method.length) - 1;
}
