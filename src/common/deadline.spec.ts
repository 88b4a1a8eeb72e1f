import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { getEventListeners } from 'node:events';
import { abortReason, type EndRace, forwardAbort, raceDeadline, toError, withinDeadline } from './deadline.js';

// Every path is checked for what it leaves behind: no timer (Jest's fake clock counts them), no abort listener
// (node:events counts those of a signal), no entry in the running set.

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

type Outcome<T> = { status: 'fulfilled'; value: T } | { status: 'rejected'; reason: unknown } | { status: 'pending' };

/** Observes a promise without ever leaving a rejection unhandled; `current()` says how it stands now. */
function track<T>(promise: Promise<T>): { current: () => Outcome<T>; settled: Promise<Outcome<T>> } {
  let outcome: Outcome<T> = { status: 'pending' };
  const settled = promise.then(
    (value): Outcome<T> => (outcome = { status: 'fulfilled', value }),
    (reason: unknown): Outcome<T> => (outcome = { status: 'rejected', reason }),
  );
  return { current: () => outcome, settled };
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  const outcome = await track(promise).settled;
  if (outcome.status !== 'rejected') throw new Error(`expected a rejection, got ${outcome.status}`);
  return outcome.reason;
}

const listenersOf = (signal: AbortSignal) => getEventListeners(signal, 'abort').length;

class UpstreamDown extends Error {}
class TimedOut extends Error {}

const MS = 1_000;
const timedOut = () => new TimedOut('timed out');

describe('raceDeadline', () => {
  let controller: AbortController;
  let caller: AbortController;
  let running: Set<EndRace>;

  beforeEach(() => {
    jest.useFakeTimers();
    controller = new AbortController();
    caller = new AbortController();
    running = new Set();
  });

  afterEach(() => {
    jest.useRealTimers();
  });

  /** A race with every option in use, so each path has a timer, two listeners and a running entry to leave behind. */
  function race<T>(work: () => PromiseLike<T>, endOnAbort = false): Promise<T> {
    return raceDeadline(work, MS, timedOut, { controller, endOnAbort, forwardFrom: caller.signal, running });
  }

  /** Holds while the race runs: its timer armed, its listeners on, its end in the running set. */
  function expectArmed(endOnAbort = false): void {
    expect(jest.getTimerCount()).toBe(1);
    expect(listenersOf(caller.signal)).toBe(1);
    expect(listenersOf(controller.signal)).toBe(endOnAbort ? 1 : 0);
    expect(running.size).toBe(1);
  }

  function expectNothingLeft(): void {
    expect(jest.getTimerCount()).toBe(0);
    expect(listenersOf(caller.signal)).toBe(0);
    expect(listenersOf(controller.signal)).toBe(0);
    expect(running.size).toBe(0);
  }

  describe.each([false, true])('with endOnAbort %s', (endOnAbort) => {
    it('settles with the work’s value, and leaves nothing behind', async () => {
      const work = deferred<string>();
      const raced = track(race(() => work.promise, endOnAbort));
      expectArmed(endOnAbort);
      work.resolve('ok');
      expect(await raced.settled).toEqual({ status: 'fulfilled', value: 'ok' });
      expectNothingLeft();
      expect(controller.signal.aborted).toBe(false);
    });

    it('rejects with the work’s error, and leaves nothing behind', async () => {
      const error = new UpstreamDown('503');
      expect(await rejectionOf(race(() => Promise.reject(error), endOnAbort))).toBe(error);
      expectNothingLeft();
      expect(controller.signal.aborted).toBe(false);
    });

    it('rejects at the deadline with the time-out error, aborts the work’s controller with it, and leaves nothing behind', async () => {
      const raced = track(race(() => new Promise<never>(() => undefined), endOnAbort));
      await jest.advanceTimersByTimeAsync(MS - 1);
      expect(raced.current().status).toBe('pending');
      await jest.advanceTimersByTimeAsync(1);
      const outcome = raced.current();
      expect(outcome).toMatchObject({ status: 'rejected', reason: expect.any(TimedOut) });
      expect(controller.signal.reason).toBe((outcome as { reason: unknown }).reason);
      expectNothingLeft();
    });

    it('ignores the work’s outcome once the deadline has passed', async () => {
      const work = deferred<string>();
      const raced = track(race(() => work.promise, endOnAbort));
      await jest.advanceTimersByTimeAsync(MS);
      work.resolve('late');
      expect(await raced.settled).toMatchObject({ status: 'rejected', reason: expect.any(TimedOut) });
      expectNothingLeft();
    });

    it('rejects at once when ended, aborting the work’s controller with the reason, and leaves nothing behind', async () => {
      const raced = track(race(() => new Promise<never>(() => undefined), endOnAbort));
      const reason = new Error('shutting down');
      for (const end of running) end(reason);
      expectNothingLeft();
      expect(await raced.settled).toEqual({ status: 'rejected', reason });
      expect(controller.signal.reason).toBe(reason);
    });

    it('rejects with the error of a work that throws synchronously, and leaves nothing behind', async () => {
      const error = new UpstreamDown('thrown');
      const raced = race(() => {
        throw error;
      }, endOnAbort);
      expectNothingLeft();
      expect(await rejectionOf(raced)).toBe(error);
    });

    it('passes the caller’s abort on to the work’s controller, and lets the work decide when the race ends', async () => {
      const work = deferred<string>();
      const raced = track(race(() => work.promise, endOnAbort));
      const reason = new Error('client went away');
      caller.abort(reason);
      expect(controller.signal.reason).toBe(reason);
      await jest.advanceTimersByTimeAsync(0);
      if (endOnAbort) {
        // An abort of the controller, forwarded or not, ends this race at once.
        expect(raced.current()).toEqual({ status: 'rejected', reason });
      } else {
        expect(raced.current().status).toBe('pending');
        work.reject(new Error('aborted'));
        expect(await raced.settled).toMatchObject({ status: 'rejected', reason: { message: 'aborted' } });
      }
      expectNothingLeft();
    });

    it('builds the time-out error only when the deadline passes', async () => {
      const timeoutError = jest.fn(timedOut);
      await raceDeadline(() => Promise.resolve('ok'), MS, timeoutError, { controller, endOnAbort });
      expect(timeoutError).not.toHaveBeenCalled();
    });
  });

  describe('with endOnAbort', () => {
    it('rejects at once with the reason when the controller aborts, whatever the work does, and leaves nothing behind', async () => {
      const raced = track(race(() => new Promise<never>(() => undefined), true));
      const reason = new Error('stream ended early');
      controller.abort(reason);
      expectNothingLeft();
      expect(await raced.settled).toEqual({ status: 'rejected', reason });
    });

    it('turns a reason that is not an Error into an AbortError', async () => {
      const raced = race(() => new Promise<never>(() => undefined), true);
      controller.abort('gone');
      expect(await rejectionOf(raced)).toMatchObject({ name: 'AbortError', message: 'gone' });
      expectNothingLeft();
    });

    it('with the controller aborted already: rejects with its reason, never starts the work, arms nothing', async () => {
      const reason = new Error('gone before');
      controller.abort(reason);
      const work = jest.fn(() => Promise.resolve('ok'));
      const raced = race(work, true);
      expectNothingLeft();
      expect(await rejectionOf(raced)).toBe(reason);
      expect(work).not.toHaveBeenCalled();
    });

    it('keeps the reason over the work’s own error when the work fails after the abort', async () => {
      const work = deferred<never>();
      const reason = new Error('the reason');
      // A listener that stops the others stands for an abort the race did not hear in time.
      controller.signal.addEventListener('abort', (event) => event.stopImmediatePropagation(), { once: true });
      const raced = track(race(() => work.promise, true));
      controller.abort(reason);
      work.reject(new DOMException('This operation was aborted', 'AbortError'));
      expect(await raced.settled).toEqual({ status: 'rejected', reason });
      expect(jest.getTimerCount()).toBe(0);
      expect(running.size).toBe(0);
    });
  });

  it('without options: only the timer, cleared however the race settles', async () => {
    await expect(raceDeadline(() => Promise.resolve(1), MS, timedOut)).resolves.toBe(1);
    expect(jest.getTimerCount()).toBe(0);
    const late = track(raceDeadline(() => new Promise<never>(() => undefined), MS, timedOut));
    expect(jest.getTimerCount()).toBe(1);
    await jest.advanceTimersByTimeAsync(MS);
    expect(late.current()).toMatchObject({ status: 'rejected', reason: expect.any(TimedOut) });
    expect(jest.getTimerCount()).toBe(0);
  });
});

describe('withinDeadline', () => {
  beforeEach(() => {
    jest.useFakeTimers();
  });

  afterEach(() => {
    jest.useRealTimers();
  });

  it('gives the operation’s result when it answers in time, and clears its timer', async () => {
    const onMiss = jest.fn((why: string) => why);
    await expect(withinDeadline(Promise.resolve('hit'), MS, onMiss)).resolves.toBe('hit');
    expect(onMiss).not.toHaveBeenCalled();
    expect(jest.getTimerCount()).toBe(0);
  });

  it('maps an operation that does not answer within the deadline to onMiss, and clears its timer', async () => {
    const operation = deferred<string>();
    const result = track(withinDeadline(operation.promise, MS, (why) => `missed: ${why}`));
    await jest.advanceTimersByTimeAsync(MS);
    expect(result.current()).toEqual({ status: 'fulfilled', value: `missed: no answer within ${MS} ms` });
    expect(jest.getTimerCount()).toBe(0);
    // A late failure of the operation is not left unhandled, and changes nothing.
    operation.reject(new Error('late'));
    await jest.advanceTimersByTimeAsync(0);
  });

  it('maps an operation that fails to onMiss with its message, and clears its timer', async () => {
    const onMiss = jest.fn((why: string) => why);
    await expect(withinDeadline(Promise.reject(new Error('ECONNRESET')), MS, onMiss)).resolves.toBe('ECONNRESET');
    expect(onMiss).toHaveBeenCalledTimes(1);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('rejects with what onMiss throws, having called it once', async () => {
    const onMiss = jest.fn((why: string): never => {
      throw new Error(`the script failed: ${why}`);
    });
    const result = track(withinDeadline(new Promise<never>(() => undefined), MS, onMiss));
    await jest.advanceTimersByTimeAsync(MS);
    expect(result.current()).toMatchObject({ status: 'rejected', reason: { message: `the script failed: no answer within ${MS} ms` } });
    expect(onMiss).toHaveBeenCalledTimes(1);
    expect(jest.getTimerCount()).toBe(0);
  });
});

describe('forwardAbort', () => {
  it('aborts the target with the source’s reason until stopped, and removes its listener when stopped', () => {
    const source = new AbortController();
    const target = new AbortController();
    const stop = forwardAbort(source.signal, target);
    expect(listenersOf(source.signal)).toBe(1);
    stop?.();
    expect(listenersOf(source.signal)).toBe(0);
    source.abort(new Error('gone'));
    expect(target.signal.aborted).toBe(false);
  });

  it('passes on the reason `reasonOf` gives', () => {
    const source = new AbortController();
    const target = new AbortController();
    forwardAbort(source.signal, target, abortReason);
    source.abort('not an error');
    expect(target.signal.reason).toMatchObject({ name: 'AbortError', message: 'The caller aborted the call' });
    expect(listenersOf(source.signal)).toBe(0);
  });

  it('has nothing to stop without a source', () => {
    expect(forwardAbort(undefined, new AbortController())).toBeUndefined();
  });
});

describe('abort reasons', () => {
  it('keep an Error as it is', () => {
    const reason = new Error('gone');
    expect(abortReason(AbortSignal.abort(reason))).toBe(reason);
    expect(toError(reason)).toBe(reason);
  });

  it('turn anything else into an AbortError', () => {
    expect(abortReason(undefined)).toMatchObject({ name: 'AbortError', message: 'The caller aborted the call' });
    expect(toError(42)).toMatchObject({ name: 'AbortError', message: '42' });
  });
});
