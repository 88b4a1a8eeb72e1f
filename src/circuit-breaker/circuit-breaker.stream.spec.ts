import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { CircuitBreaker, type CircuitBreakerOptions } from './circuit-breaker.js';
import {
  BreakerShutdownError,
  BulkheadFullError,
  CallTimeoutError,
  CircuitOpenError,
  StreamNotConsumedError,
  StreamStalledError,
} from './circuit-breaker.errors.js';
import type { GuardedStream } from './guarded-stream.js';

const OPTIONS: CircuitBreakerOptions = {
  enabled: true,
  failureThreshold: 2,
  timeoutMs: 1_000,
  resetTimeoutMs: 10_000,
  maxOpenMs: 300_000,
  resetBackoff: 1,
  maxConcurrent: 100,
  streamIdleTimeoutMs: 500,
  failureRate: 0,
  windowMs: 30_000,
  minCalls: 20,
};

class UpstreamBroke extends Error {}
class BadPrompt extends Error {}

/**
 * A stream the test drives: `push` an item, `fail`, `end`. Like a fetch body it never settles a pending read on its
 * own when its signal aborts (so the breaker's deadlines are what the tests see), and it records whether it was aborted.
 */
class Feed {
  signal?: AbortSignal;
  private readonly queue: Array<IteratorResult<string> | Error> = [];
  private waiting?: { resolve: (result: IteratorResult<string>) => void; reject: (error: Error) => void };

  readonly task = (signal: AbortSignal): Promise<AsyncIterable<string>> => {
    this.signal = signal;
    return Promise.resolve({ [Symbol.asyncIterator]: () => ({ next: () => this.read() }) });
  };

  get aborted(): boolean {
    return this.signal?.aborted ?? false;
  }

  push(...items: string[]): void {
    for (const item of items) this.deliver({ value: item, done: false });
  }

  fail(error: Error): void {
    this.deliver(error);
  }

  end(): void {
    this.deliver({ value: undefined, done: true });
  }

  private read(): Promise<IteratorResult<string>> {
    const next = this.queue.shift();
    if (next instanceof Error) return Promise.reject(next);
    if (next) return Promise.resolve(next);
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  private deliver(next: IteratorResult<string> | Error): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    if (!waiting) this.queue.push(next);
    else if (next instanceof Error) waiting.reject(next);
    else waiting.resolve(next);
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

describe('CircuitBreaker.fireStream', () => {
  let breakers: CircuitBreaker[];

  function breakerWith(overrides: Partial<CircuitBreakerOptions> = {}): CircuitBreaker {
    const breaker = new CircuitBreaker('model', { ...OPTIONS, ...overrides });
    breakers.push(breaker);
    return breaker;
  }

  /** A stream through `breaker` whose first item has arrived. */
  async function started(breaker: CircuitBreaker, feed: Feed, signal?: AbortSignal): Promise<GuardedStream<string>> {
    const stream = breaker.fireStream(feed.task, { signal });
    await settle();
    feed.push('first');
    return stream;
  }

  beforeEach(() => {
    jest.useFakeTimers({ now: Date.UTC(2026, 10, 30) });
    breakers = [];
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
  });

  afterEach(() => {
    for (const breaker of breakers) breaker.shutdown();
    jest.restoreAllMocks();
    jest.useRealTimers();
  });

  it('resolves once the first item arrives, streams every item, and counts one success when the stream completes', async () => {
    const breaker = breakerWith();
    const feed = new Feed();
    const stream = await started(breaker, feed);
    expect(breaker.snapshot().inFlight).toBe(1);
    feed.push('second', 'third');
    feed.end();
    const items: string[] = [];
    for await (const item of stream) items.push(item);
    expect(items).toEqual(['first', 'second', 'third']);
    expect(breaker.snapshot()).toMatchObject({ inFlight: 0, stats: { successes: 1, failures: 0 } });
    expect(feed.aborted).toBe(false);
  });

  it('no first item within the time-out: rejects with CallTimeoutError, aborts the upstream and counts a failure and a time-out', async () => {
    const breaker = breakerWith();
    const feed = new Feed();
    const stream = rejectionOf(breaker.fireStream(feed.task));
    await jest.advanceTimersByTimeAsync(OPTIONS.timeoutMs);
    expect(await stream).toBeInstanceOf(CallTimeoutError);
    expect(feed.aborted).toBe(true);
    expect(breaker.snapshot()).toMatchObject({ inFlight: 0, stats: { failures: 1, timeouts: 1, successes: 0 } });
  });

  it('a gap longer than the idle time-out after the first item: the read rejects with StreamStalledError, the upstream is aborted, a failure counts', async () => {
    const breaker = breakerWith();
    const feed = new Feed();
    const stream = await started(breaker, feed);
    expect(await stream.next()).toEqual({ value: 'first', done: false });
    const read = rejectionOf(stream.next());
    await jest.advanceTimersByTimeAsync(OPTIONS.streamIdleTimeoutMs);
    expect(await read).toBeInstanceOf(StreamStalledError);
    expect(feed.aborted).toBe(true);
    expect(breaker.snapshot()).toMatchObject({ inFlight: 0, stats: { failures: 1, timeouts: 1, successes: 0 } });
  });

  it('a consumer that stops pulling for the idle time-out (its client stopped reading) ends the call: upstream aborted, slot back, nothing counted, the next read rejects', async () => {
    const breaker = breakerWith();
    const feed = new Feed();
    const stream = await started(breaker, feed);
    expect(await stream.next()).toEqual({ value: 'first', done: false });
    feed.push('second');
    await jest.advanceTimersByTimeAsync(OPTIONS.streamIdleTimeoutMs - 1);
    expect({ inFlight: breaker.snapshot().inFlight, aborted: feed.aborted }).toEqual({ inFlight: 1, aborted: false });
    await jest.advanceTimersByTimeAsync(1);
    expect(feed.aborted).toBe(true);
    expect(breaker.snapshot()).toMatchObject({ inFlight: 0, failures: 0, stats: { failures: 0, successes: 0 } });
    expect(await rejectionOf(stream.next())).toBeInstanceOf(StreamNotConsumedError);
  });

  it('a stream never read past its first item is ended the same way', async () => {
    const breaker = breakerWith();
    const feed = new Feed();
    await started(breaker, feed);
    await jest.advanceTimersByTimeAsync(OPTIONS.streamIdleTimeoutMs);
    expect(feed.aborted).toBe(true);
    expect(breaker.snapshot().inFlight).toBe(0);
  });

  it('a half-open trial whose consumer stops pulling gives the trial back: the next call is the new trial', async () => {
    const breaker = breakerWith({ failureThreshold: 1 });
    await rejectionOf(breaker.fireStream(() => Promise.reject(new UpstreamBroke('down'))));
    await jest.advanceTimersByTimeAsync(OPTIONS.resetTimeoutMs);
    const trialFeed = new Feed();
    await started(breaker, trialFeed);
    expect(await rejectionOf(breaker.fireStream(new Feed().task))).toBeInstanceOf(CircuitOpenError);
    await jest.advanceTimersByTimeAsync(OPTIONS.streamIdleTimeoutMs);
    expect(breaker.state).toBe('half_open');
    const next = new Feed();
    const stream = await started(breaker, next);
    next.end();
    for await (const item of stream) expect(item).toBe('first');
    expect(breaker.state).toBe('closed');
  });

  it('the idle time-out is per gap: a stream longer than it, with shorter gaps, completes', async () => {
    const breaker = breakerWith();
    const feed = new Feed();
    const stream = await started(breaker, feed);
    const items: string[] = [];
    const reading = (async () => {
      for await (const item of stream) items.push(item);
    })();
    for (let i = 0; i < 5; i++) {
      await jest.advanceTimersByTimeAsync(OPTIONS.streamIdleTimeoutMs * 0.8);
      feed.push(`item ${i}`);
    }
    feed.end();
    await reading;
    expect(items).toHaveLength(6);
    expect(breaker.snapshot().stats).toMatchObject({ successes: 1, failures: 0, timeouts: 0 });
  });

  it('an error mid-stream is rethrown and classified: a failure by default, nothing when the classifier says it does not count', async () => {
    const breaker = breakerWith();
    for (const [error, failures] of [
      [new UpstreamBroke('cut'), 1],
      [new BadPrompt('rejected'), 1],
    ] as const) {
      const feed = new Feed();
      const stream = breaker.fireStream(feed.task, { classify: (e) => ({ counts: !(e instanceof BadPrompt) }) });
      await settle();
      feed.push('first');
      const reader = await stream;
      await reader.next();
      const read = rejectionOf(reader.next());
      feed.fail(error);
      expect(await read).toBe(error);
      expect(breaker.snapshot().stats.failures).toBe(failures);
    }
    expect(breaker.snapshot().inFlight).toBe(0);
  });

  it('a consumer that stops reading early aborts the upstream and counts neither way', async () => {
    const breaker = breakerWith();
    const feed = new Feed();
    const stream = await started(breaker, feed);
    feed.push('second');
    for await (const item of stream) if (item === 'first') break;
    expect(feed.aborted).toBe(true);
    expect(breaker.snapshot()).toMatchObject({ inFlight: 0, stats: { successes: 0, failures: 0 } });
  });

  it('the caller’s signal aborting mid-stream rejects the pending read with its reason, aborts the upstream, and counts neither way', async () => {
    const breaker = breakerWith();
    const feed = new Feed();
    const caller = new AbortController();
    const stream = await started(breaker, feed, caller.signal);
    await stream.next();
    const read = rejectionOf(stream.next());
    const gone = new Error('client gone');
    caller.abort(gone);
    expect(await read).toBe(gone);
    expect(feed.aborted).toBe(true);
    expect(breaker.snapshot()).toMatchObject({ inFlight: 0, stats: { successes: 0, failures: 0, timeouts: 0 } });
  });

  it('the caller’s signal aborting while the consumer holds an item ends the call at once: its place back, counted neither way', async () => {
    const breaker = breakerWith({ maxConcurrent: 1 });
    const feed = new Feed();
    const caller = new AbortController();
    const gone = new Error('client gone');
    const stream = await started(breaker, feed, caller.signal);
    await stream.next();
    caller.abort(gone);
    // No idle time-out waited for.
    expect(breaker.snapshot()).toMatchObject({ inFlight: 0, stats: { successes: 0, failures: 0, timeouts: 0 } });
    expect(feed.aborted).toBe(true);
    expect(await rejectionOf(stream.next())).toBe(gone);
  });

  it('the caller’s signal aborting just after a read resolved, before the consumer has the item, ends the call too', async () => {
    const breaker = breakerWith({ maxConcurrent: 1 });
    const caller = new AbortController();
    const gone = new Error('client gone');
    let reads = 0;
    const source: AsyncIterable<string> = {
      [Symbol.asyncIterator]: () => ({
        next: () => {
          const read = Promise.resolve({ value: `item ${++reads}`, done: false });
          // The second item: the caller leaves once it has arrived, before the breaker's reader resumes.
          if (reads === 2) void read.then(() => void Promise.resolve().then(() => caller.abort(gone)));
          return read;
        },
      }),
    };
    const stream = await breaker.fireStream(() => Promise.resolve(source), { signal: caller.signal });
    expect(await stream.next()).toEqual({ value: 'item 1', done: false });
    expect(await rejectionOf(stream.next())).toBe(gone);
    expect(breaker.snapshot()).toMatchObject({ inFlight: 0, stats: { successes: 0, failures: 0, timeouts: 0 } });
  });

  it('the caller’s signal aborting as the first item arrives ends the call at once, whenever it lands', async () => {
    // The abort lands some promise hops after the first read resolved: before fireStream resolves (a rejection), or
    // after it built the stream (ended at once); either way nothing holds the place for the idle time-out.
    for (let hops = 0; hops <= 8; hops++) {
      const breaker = breakerWith({ maxConcurrent: 1 });
      const caller = new AbortController();
      const gone = new Error('client gone');
      const source: AsyncIterable<string> = {
        [Symbol.asyncIterator]: () => ({
          next: () => {
            const read = Promise.resolve({ value: 'first', done: false });
            let hop: Promise<unknown> = read;
            for (let i = 0; i < hops; i++) hop = hop.then(() => undefined);
            void hop.then(() => caller.abort(gone));
            return read;
          },
        }),
      };
      const started = await breaker
        .fireStream(() => Promise.resolve(source), { signal: caller.signal })
        .then(
          (stream) => stream,
          (error: unknown) => error,
        );
      await settle();
      expect({ hops, aborted: caller.signal.aborted, inFlight: breaker.snapshot().inFlight }).toEqual({ hops, aborted: true, inFlight: 0 });
      if (started instanceof Error) expect(started).toBe(gone);
      else expect(await rejectionOf((started as GuardedStream<string>).next())).toBe(gone);
      expect(breaker.snapshot().stats).toMatchObject({ successes: 0, failures: 0, timeouts: 0 });
    }
  });

  it('refuses like fire(): an open circuit, a full bulkhead, a caller already gone — the task never runs', async () => {
    const calls: string[] = [];
    const counting = (feed: Feed) => (signal: AbortSignal) => {
      calls.push('called');
      return feed.task(signal);
    };
    const full = breakerWith({ maxConcurrent: 1 });
    await started(full, new Feed());
    expect(await rejectionOf(full.fireStream(counting(new Feed())))).toBeInstanceOf(BulkheadFullError);

    const gone = new AbortController();
    gone.abort(new Error('left'));
    expect(await rejectionOf(breakerWith().fireStream(counting(new Feed()), { signal: gone.signal }))).toEqual(new Error('left'));

    const open = breakerWith();
    for (let i = 0; i < OPTIONS.failureThreshold; i++) {
      const stream = rejectionOf(open.fireStream(new Feed().task));
      await jest.advanceTimersByTimeAsync(OPTIONS.timeoutMs);
      await stream;
    }
    expect(open.state).toBe('open');
    expect(await rejectionOf(open.fireStream(counting(new Feed())))).toBeInstanceOf(CircuitOpenError);
    expect(calls).toEqual([]);
  });

  it('a half-open trial streamed: the circuit closes when the stream completes, not at its first item; a trial abandoned frees the trial', async () => {
    const breaker = breakerWith();
    for (let i = 0; i < OPTIONS.failureThreshold; i++) {
      const stream = rejectionOf(breaker.fireStream(new Feed().task));
      await jest.advanceTimersByTimeAsync(OPTIONS.timeoutMs);
      await stream;
    }
    await jest.advanceTimersByTimeAsync(OPTIONS.resetTimeoutMs);
    expect(breaker.state).toBe('half_open');

    const abandoned = new Feed();
    const first = await started(breaker, abandoned);
    expect(await rejectionOf(breaker.fireStream(new Feed().task))).toBeInstanceOf(CircuitOpenError);
    await first.return();
    expect(breaker.state).toBe('half_open');

    const trial = new Feed();
    const stream = await started(breaker, trial);
    await stream.next();
    expect(breaker.state).toBe('half_open');
    trial.end();
    expect(await stream.next()).toEqual({ value: undefined, done: true });
    expect(breaker.state).toBe('closed');
  });

  it('shutdown ends a stream in flight with BreakerShutdownError, counting neither way', async () => {
    const breaker = breakerWith();
    const feed = new Feed();
    const stream = await started(breaker, feed);
    await stream.next();
    const read = rejectionOf(stream.next());
    breaker.shutdown();
    expect(await read).toBeInstanceOf(BreakerShutdownError);
    expect(feed.aborted).toBe(true);
    expect(breaker.snapshot().stats).toMatchObject({ successes: 0, failures: 0 });
  });
});
