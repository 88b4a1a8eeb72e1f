import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { Injectable, Logger, Scope, SetMetadata, type Provider } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { Test, type TestingModule } from '@nestjs/testing';
import { circuitBreakerConfig } from '../config/circuit-breaker.config.js';
import { NO_BREAKER, REQUEST_SCOPED_NOT_SUPPORTED, SIGNAL_PARAMETER_REQUIRED } from './circuit-breaker.constants.js';
import { UseCircuitBreaker } from './circuit-breaker.decorator.js';
import { CallTimeoutError, CircuitOpenError } from './circuit-breaker.errors.js';
import { CircuitBreakerModule } from './circuit-breaker.module.js';
import { CircuitBreakerRegistry } from './circuit-breaker.registry.js';
import { TEST_BREAKER_CONFIG } from '../../test/support/breaker-config.js';

// The wrapping is tested once, here, through a real Nest module; services elsewhere are tested unwrapped.

class UpstreamDown extends Error {}
class BadRequest extends Error {}

type Outcome = 'ok' | 'upstream_down' | 'bad_request' | 'hang';

interface Received {
  input: unknown;
  signal: unknown;
}

@Injectable()
class TestProvider {
  outcome: Outcome = 'ok';
  readonly received: Received[] = [];
  readonly plainCalls: string[] = [];

  @UseCircuitBreaker({ classify: (error) => (error instanceof BadRequest ? { counts: false } : { counts: true }) })
  @SetMetadata('x', 1)
  async call(input: string, signal?: AbortSignal): Promise<string> {
    this.received.push({ input, signal });
    switch (this.outcome) {
      case 'upstream_down':
        throw new UpstreamDown(`503 for ${input}`);
      case 'bad_request':
        throw new BadRequest(`422 for ${input}`);
      case 'hang':
        return new Promise<string>(() => undefined);
      default:
        return `answer to ${input}`;
    }
  }

  async plain(input: string): Promise<string> {
    this.plainCalls.push(input);
    if (this.outcome === 'upstream_down') throw new UpstreamDown('plain failed');
    return `plain ${input}`;
  }
}

@Injectable()
class ZeroParameterProvider {
  @UseCircuitBreaker()
  async ping(): Promise<string> {
    return 'pong';
  }
}

@Injectable()
class UnknownBreakerProvider {
  @UseCircuitBreaker({ name: 'other' })
  async call(input: string, signal?: AbortSignal): Promise<string> {
    return `${input} ${String(signal)}`;
  }
}

@Injectable({ scope: Scope.REQUEST })
class RequestScopedProvider {
  @UseCircuitBreaker()
  async call(input: string, signal?: AbortSignal): Promise<string> {
    return `${input} ${signal === undefined ? 'without' : 'with'} signal`;
  }
}

@Injectable()
class DefaultParameterProvider {
  readonly received: Array<{ question: unknown; topK: unknown; signal: unknown }> = [];

  @UseCircuitBreaker()
  async ask(question: string, topK = 3, signal?: AbortSignal): Promise<string> {
    this.received.push({ question, topK, signal });
    return `${question} (${topK})`;
  }
}

@Injectable()
class CancellableProvider {
  readonly received: unknown[] = [];

  /** Waits for its signal, as real I/O does, and fails with the abort reason. */
  @UseCircuitBreaker()
  async call(input: string, signal?: AbortSignal): Promise<string> {
    this.received.push(signal);
    return new Promise<string>((_resolve, reject) => {
      signal?.addEventListener('abort', () => reject(new UpstreamDown(`${input}: ${String(signal.reason)}`)), { once: true });
    });
  }
}

/** Decorated by hand, as plain JavaScript would: no `design:paramtypes` metadata is emitted for it. */
class HandDecoratedProvider {
  readonly received: Array<{ input: unknown; signal: unknown }> = [];

  async call(input: string, signal?: AbortSignal): Promise<string> {
    this.received.push({ input, signal });
    return `answer to ${input}`;
  }
}
UseCircuitBreaker()(HandDecoratedProvider.prototype, 'call', Object.getOwnPropertyDescriptor(HandDecoratedProvider.prototype, 'call')!);
Injectable()(HandDecoratedProvider);

const CONFIG = TEST_BREAKER_CONFIG;

describe('CircuitBreakerExplorer with @UseCircuitBreaker()', () => {
  let moduleRef: TestingModule | undefined;
  let warnSpy: jest.Spied<Logger['warn']>;

  function compile(providers: Provider[]): Promise<TestingModule> {
    return Test.createTestingModule({ imports: [CircuitBreakerModule], providers })
      .overrideProvider(circuitBreakerConfig.KEY)
      .useValue(CONFIG)
      .compile();
  }

  async function start(providers: Provider[]): Promise<TestingModule> {
    moduleRef = await compile(providers);
    await moduleRef.init();
    return moduleRef;
  }

  async function initFailure(providers: Provider[]): Promise<unknown> {
    moduleRef = await compile(providers);
    return moduleRef.init().then(
      () => new Error('expected module init to fail'),
      (error: unknown) => error,
    );
  }

  beforeEach(() => {
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    warnSpy = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });

  afterEach(async () => {
    await moduleRef?.close();
    moduleRef = undefined;
    jest.restoreAllMocks();
    jest.useRealTimers();
  });

  describe('a decorated method', () => {
    it('receives an AbortSignal as its last argument, next to the caller’s arguments', async () => {
      const provider = (await start([TestProvider])).get(TestProvider);
      await expect(provider.call('hello')).resolves.toBe('answer to hello');
      expect(provider.received).toHaveLength(1);
      expect(provider.received[0]?.input).toBe('hello');
      expect(provider.received[0]?.signal).toBeInstanceOf(AbortSignal);
      expect((provider.received[0]?.signal as AbortSignal).aborted).toBe(false);
    });

    it('receives the signal the breaker aborts at its time-out', async () => {
      const provider = (await start([TestProvider])).get(TestProvider);
      jest.useFakeTimers();
      provider.outcome = 'hang';
      const result = provider.call('slow').catch((error: unknown) => error);
      await jest.advanceTimersByTimeAsync(1_000);
      const error = await result;
      expect(error).toBeInstanceOf(CallTimeoutError);
      const signal = provider.received[0]?.signal as AbortSignal;
      expect(signal.aborted).toBe(true);
      expect(signal.reason).toBe(error);
    });

    it('fails fast with CircuitOpenError, without running its body, after threshold failures', async () => {
      const ref = await start([TestProvider]);
      const provider = ref.get(TestProvider);
      provider.outcome = 'upstream_down';
      await expect(provider.call('a')).rejects.toBeInstanceOf(UpstreamDown);
      await expect(provider.call('b')).rejects.toBeInstanceOf(UpstreamDown);
      expect(provider.received).toHaveLength(2);

      provider.outcome = 'ok';
      await expect(provider.call('c')).rejects.toBeInstanceOf(CircuitOpenError);
      expect(provider.received).toHaveLength(2);
      expect(ref.get(CircuitBreakerRegistry).get('huggingface').state).toBe('open');
    });

    it('passes request-specific errors (classified as not counting) through unchanged, without opening the circuit', async () => {
      const ref = await start([TestProvider]);
      const provider = ref.get(TestProvider);
      provider.outcome = 'bad_request';
      for (let i = 0; i < 4; i++) {
        await expect(provider.call(`bad ${i}`)).rejects.toThrow(new BadRequest(`422 for bad ${i}`));
      }
      provider.outcome = 'ok';
      await expect(provider.call('good')).resolves.toBe('answer to good');
      expect(ref.get(CircuitBreakerRegistry).get('huggingface').state).toBe('closed');
    });

    it('keeps the other metadata on the method readable through Reflector', async () => {
      const ref = await start([TestProvider]);
      const provider = ref.get(TestProvider);
      expect(provider.call).not.toBe(TestProvider.prototype.call);
      expect(ref.get(Reflector).get('x', provider.call)).toBe(1);
      expect(provider.call.name).toBe('call');
    });

    it('gets its last declared parameter set to the signal even when an earlier one has a default', async () => {
      const provider = (await start([DefaultParameterProvider])).get(DefaultParameterProvider);
      await expect(provider.ask('what is half-open?')).resolves.toBe('what is half-open? (3)');
      expect(provider.received[0]?.question).toBe('what is half-open?');
      expect(provider.received[0]?.signal).toBeInstanceOf(AbortSignal);
    });

    it('aborts the call when the caller’s own signal aborts, without counting it against the circuit', async () => {
      const ref = await start([CancellableProvider]);
      const provider = ref.get(CancellableProvider);
      for (let i = 0; i < 3; i++) {
        const caller = new AbortController();
        const call = provider.call(`q${i}`, caller.signal);
        caller.abort('client went away');
        await expect(call).rejects.toThrow(new UpstreamDown(`q${i}: client went away`));
      }
      expect(provider.received).toHaveLength(3);
      const breaker = ref.get(CircuitBreakerRegistry).get('huggingface');
      expect(breaker.state).toBe('closed');
      expect(breaker.snapshot().failures).toBe(0);
    });

    it('gets the signal as its last parameter when no design metadata was emitted, from the declared parameter count', async () => {
      const provider = (await start([HandDecoratedProvider])).get(HandDecoratedProvider);
      expect(Reflect.getMetadata('design:paramtypes', HandDecoratedProvider.prototype, 'call')).toBeUndefined();
      await expect(provider.call('hello')).resolves.toBe('answer to hello');
      expect(provider.received[0]?.input).toBe('hello');
      expect(provider.received[0]?.signal).toBeInstanceOf(AbortSignal);
    });
  });

  describe('what is left alone', () => {
    it('leaves an undecorated method untouched, even while the circuit is open', async () => {
      const ref = await start([TestProvider]);
      const provider = ref.get(TestProvider);
      expect(provider.plain).toBe(TestProvider.prototype.plain);
      provider.outcome = 'upstream_down';
      await expect(provider.call('a')).rejects.toBeInstanceOf(UpstreamDown);
      await expect(provider.call('b')).rejects.toBeInstanceOf(UpstreamDown);
      await expect(provider.plain('p')).rejects.toBeInstanceOf(UpstreamDown);
      provider.outcome = 'ok';
      await expect(provider.plain('q')).resolves.toBe('plain q');
      expect(provider.plainCalls).toEqual(['p', 'q']);
    });

    it('gives an instance made outside Nest the plain method, with no breaker', async () => {
      await start([TestProvider]);
      const outside = new TestProvider();
      expect(outside.call).toBe(TestProvider.prototype.call);
      outside.outcome = 'upstream_down';
      for (let i = 0; i < 5; i++) await expect(outside.call(`x${i}`)).rejects.toBeInstanceOf(UpstreamDown);
      expect(outside.received).toHaveLength(5);
      expect(outside.received[0]?.signal).toBeUndefined();
    });

    it('leaves a request-scoped provider’s method unwrapped and warns about it', async () => {
      const ref = await start([RequestScopedProvider]);
      expect(warnSpy).toHaveBeenCalledWith(REQUEST_SCOPED_NOT_SUPPORTED('RequestScopedProvider.call'));
      const provider = await ref.resolve(RequestScopedProvider);
      await expect(provider.call('q')).resolves.toBe('q without signal');
    });

    it('wraps a provider registered under an alias (useExisting) once, and starts', async () => {
      const ref = await start([TestProvider, { provide: 'AliasedTestProvider', useExisting: TestProvider }]);
      const provider = ref.get(TestProvider);
      expect(ref.get<TestProvider>('AliasedTestProvider')).toBe(provider);
      provider.outcome = 'upstream_down';
      await expect(provider.call('a')).rejects.toBeInstanceOf(UpstreamDown);
      await expect(provider.call('b')).rejects.toBeInstanceOf(UpstreamDown);
      expect(provider.received).toHaveLength(2);
      expect(ref.get(CircuitBreakerRegistry).get('huggingface').snapshot().stats.failures).toBe(2);
    });
  });

  describe('mistakes reported at start-up', () => {
    it('refuses a decorated method that declares no parameter for the signal', async () => {
      const error = await initFailure([ZeroParameterProvider]);
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toBe(SIGNAL_PARAMETER_REQUIRED('ZeroParameterProvider.ping'));
    });

    it('refuses a decorated method naming a breaker that was never registered', async () => {
      const error = await initFailure([UnknownBreakerProvider]);
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toBe(NO_BREAKER('other'));
    });
  });
});
