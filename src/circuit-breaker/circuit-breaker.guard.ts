import { CIRCUIT_BREAKER_METADATA, SIGNAL_PARAMETER_REQUIRED } from './circuit-breaker.constants.js';
import type { UseCircuitBreakerOptions } from './circuit-breaker.decorator.js';
import type { CircuitBreaker } from './circuit-breaker.js';

type AsyncMethod = (...args: unknown[]) => Promise<unknown>;

/** A method of `instance` decorated with @UseCircuitBreaker(), with the decorator's options. */
export interface GuardedMethod {
  methodName: string;
  options: UseCircuitBreakerOptions;
}

/** Every @UseCircuitBreaker() method `instance` has, from its class and the classes it extends. */
export function decoratedMethods(instance: object, methodNames: readonly string[]): GuardedMethod[] {
  const found: GuardedMethod[] = [];
  for (const methodName of methodNames) {
    const method = (instance as Record<string, unknown>)[methodName];
    if (typeof method !== 'function') continue;
    const options = Reflect.getMetadata(CIRCUIT_BREAKER_METADATA, method) as UseCircuitBreakerOptions | undefined;
    if (options) found.push({ methodName, options });
  }
  return found;
}

/** The names of the methods on `instance`'s prototype chain (Object's own aside). */
export function methodNamesOf(instance: object): string[] {
  const names = new Set<string>();
  for (let prototype = Object.getPrototypeOf(instance) as object | null; prototype && prototype !== Object.prototype;) {
    for (const name of Object.getOwnPropertyNames(prototype)) if (name !== 'constructor') names.add(name);
    prototype = Object.getPrototypeOf(prototype) as object | null;
  }
  return [...names];
}

/**
 * Replaces `instance[methodName]` by a method that runs it behind `breaker`: the last parameter receives the call's
 * AbortSignal (aborted at the breaker's time-out, or when the caller's own signal, passed there, aborts).
 */
export function guardMethod(instance: object, { methodName, options }: GuardedMethod, breaker: CircuitBreaker, target: string): void {
  const prototype = Object.getPrototypeOf(instance) as object;
  const original = (instance as Record<string, unknown>)[methodName] as AsyncMethod;
  const signalIndex = lastParameterIndex(prototype, methodName, original);
  if (signalIndex < 0) throw new Error(SIGNAL_PARAMETER_REQUIRED(target));
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
  (instance as Record<string, unknown>)[methodName] = circuitBreakerInterceptor;
}

/** The declared parameter count from emitted metadata; `Function.length` stops at the first default value. */
function lastParameterIndex(prototype: object, methodName: string, method: AsyncMethod): number {
  const parameterTypes: unknown = Reflect.getMetadata('design:paramtypes', prototype, methodName);
  return (Array.isArray(parameterTypes) ? parameterTypes.length : method.length) - 1;
}
