import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { CircuitBreaker, type CircuitBreakerEvent, type CircuitBreakerOptions, type FailureVerdict } from './circuit-breaker.js';
import { BulkheadFullError, CallTimeoutError, CircuitOpenError } from './circuit-breaker.errors.js';

// Every time rule runs on Jest's fake clock; tasks are small async functions whose outcome the test controls.

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

class UpstreamDown extends Error {}
class BadRequest extends Error {}

const upstreamDown = () => Promise.reject(new UpstreamDown('503'));
const ok = () => Promise.resolve('ok');
const never = () => new Promise<never>(() => undefined);
/** I/O that honours its signal: it ends only when the call is aborted. */
const untilAborted = (signal: AbortSignal) =>
  new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(new Error('gone'))));
const isOutage = (error: unknown): FailureVerdict => (error instanceof BadRequest ? { counts: false } : { counts: true });

const START = new Date('2030-01-01T00:00:00.000Z');
const OPTIONS: CircuitBreakerOptions = {
  enabled: true,
  failureThreshold: 5,
  timeoutMs: 1_000,
  resetTimeoutMs: 30_000,
  maxOpenMs: 300_000,
  resetBackoff: 1,
  maxConcurrent: 100,
  streamIdleTimeoutMs: 500,
  failureRate: 0,
  windowMs: 30_000,
  minCalls: 20,
};

describe('CircuitBreaker', () => {
  let breakers: CircuitBreaker[];
  let logSpy: jest.Spied<Logger['log']>;

  function breakerWith(overrides: Partial<CircuitBreakerOptions> = {}): CircuitBreaker {
    const breaker = new CircuitBreaker('upstream', { ...OPTIONS, ...overrides });
    breakers.push(breaker);
    return breaker;
  }

  async function failTimes(breaker: CircuitBreaker, times: number): Promise<void> {
    for (let i = 0; i < times; i++) await rejectionOf(breaker.fire(upstreamDown));
  }

  async function openedBreaker(overrides: Partial<CircuitBreakerOptions> = {}): Promise<CircuitBreaker> {
    const breaker = breakerWith(overrides);
    await failTimes(breaker, breaker.snapshot().failureThreshold);
    expect(breaker.state).toBe('open');
    return breaker;
  }

  beforeEach(() => {
    jest.useFakeTimers({ now: START });
    breakers = [];
    logSpy = jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
  });

  afterEach(() => {
    for (const breaker of breakers) breaker.shutdown();
    logSpy.mockRestore();
    jest.useRealTimers();
  });

  describe('opening on consecutive failures', () => {
    it('stays closed after one failure fewer than the threshold', async () => {
      const breaker = breakerWith();
      await failTimes(breaker, 4);
      expect(breaker.state).toBe('closed');
      expect(breaker.snapshot().failures).toBe(4);
    });

    it('opens after failureThreshold consecutive failures', async () => {
      const breaker = breakerWith();
      await failTimes(breaker, 5);
      expect(breaker.state).toBe('open');
    });

    it('forgets earlier failures after a success: 4 failures, 1 success, 4 failures leave it closed', async () => {
      const breaker = breakerWith();
      await failTimes(breaker, 4);
      await expect(breaker.fire(ok)).resolves.toBe('ok');
      expect(breaker.snapshot().failures).toBe(0);
      await failTimes(breaker, 4);
      expect(breaker.state).toBe('closed');
      await failTimes(breaker, 1);
      expect(breaker.state).toBe('open');
    });

    it('opens on a threshold of 1 at the first failure', async () => {
      const breaker = breakerWith({ failureThreshold: 1 });
      await failTimes(breaker, 1);
      expect(breaker.state).toBe('open');
    });

    it('is never opened by an error percentage while failures alternate with successes', async () => {
      const breaker = breakerWith();
      for (let i = 0; i < 50; i++) {
        await rejectionOf(breaker.fire(upstreamDown));
        await breaker.fire(ok);
      }
      expect(breaker.state).toBe('closed');
      expect(breaker.snapshot().stats).toMatchObject({ successes: 50, failures: 50 });
    });

    it('stays closed after 3 failures out of 3 calls with a threshold of 5 (100% errors)', async () => {
      const breaker = breakerWith();
      await failTimes(breaker, 3);
      expect(breaker.state).toBe('closed');
    });

    it('is not opened by the error percentage of many failed calls spread over a long time', async () => {
      const breaker = breakerWith({ failureThreshold: 3 });
      for (let i = 0; i < 20; i++) {
        await failTimes(breaker, 2);
        await breaker.fire(ok);
        await jest.advanceTimersByTimeAsync(700);
      }
      expect(breaker.state).toBe('closed');
    });
  });

  describe('while open', () => {
    it('rejects with CircuitOpenError without calling the task', async () => {
      const breaker = await openedBreaker();
      const task = jest.fn(ok);
      const error = await rejectionOf(breaker.fire(task));
      expect(error).toBeInstanceOf(CircuitOpenError);
      expect(error).toMatchObject({ code: 'EOPENBREAKER', breaker: 'upstream', retryAfterSeconds: 30 });
      expect(task).not.toHaveBeenCalled();
    });

    it('counts every refused call as a reject', async () => {
      const breaker = await openedBreaker();
      await rejectionOf(breaker.fire(ok));
      await rejectionOf(breaker.fire(ok));
      expect(breaker.snapshot().stats.rejects).toBe(2);
    });
  });

  describe('half-open trial', () => {
    it('stays open until resetTimeoutMs has passed, then turns half_open', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(29_999);
      expect(breaker.state).toBe('open');
      await jest.advanceTimersByTimeAsync(1);
      expect(breaker.state).toBe('half_open');
    });

    it('lets exactly one trial call through and rejects the calls fired meanwhile at once', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(30_000);
      const trial = deferred<string>();
      const trialTask = jest.fn(() => trial.promise);
      const trialCall = track(breaker.fire(trialTask));

      const others = [jest.fn(ok), jest.fn(ok), jest.fn(ok)];
      const errors = await Promise.all(others.map((task) => rejectionOf(breaker.fire(task))));

      expect(trialCall.current().status).toBe('pending');
      for (const error of errors) expect(error).toBeInstanceOf(CircuitOpenError);
      for (const task of others) expect(task).not.toHaveBeenCalled();
      expect(trialTask).toHaveBeenCalledTimes(1);
      trial.resolve('recovered');
      await expect(trialCall.settled).resolves.toEqual({ status: 'fulfilled', value: 'recovered' });
    });

    it('closes after a successful trial with the failure counter back at 0', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(30_000);
      await expect(breaker.fire(ok)).resolves.toBe('ok');
      expect(breaker.state).toBe('closed');
      expect(breaker.snapshot().failures).toBe(0);
      const task = jest.fn(ok);
      await breaker.fire(task);
      expect(task).toHaveBeenCalledTimes(1);
    });

    it('needs the full threshold of new failures to open again after a successful trial', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(30_000);
      await breaker.fire(ok);
      await failTimes(breaker, 4);
      expect(breaker.state).toBe('closed');
    });

    it('re-opens after a failed trial for another full resetTimeoutMs', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(30_000);
      const trialError = await rejectionOf(breaker.fire(upstreamDown));
      expect(trialError).toBeInstanceOf(UpstreamDown);
      expect(breaker.state).toBe('open');
      const task = jest.fn(ok);
      expect(await rejectionOf(breaker.fire(task))).toBeInstanceOf(CircuitOpenError);
      expect(task).not.toHaveBeenCalled();

      await jest.advanceTimersByTimeAsync(29_999);
      expect(breaker.state).toBe('open');
      await jest.advanceTimersByTimeAsync(1);
      expect(breaker.state).toBe('half_open');
    });

    it('re-opens when the trial times out', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(30_000);
      const trial = track(breaker.fire(never));
      await jest.advanceTimersByTimeAsync(1_000);
      const outcome = trial.current();
      expect(outcome.status).toBe('rejected');
      expect(outcome.status === 'rejected' && outcome.reason).toBeInstanceOf(CallTimeoutError);
      expect(breaker.state).toBe('open');
      await jest.advanceTimersByTimeAsync(29_999);
      expect(breaker.state).toBe('open');
    });
  });

  describe('time-out', () => {
    it('aborts the call’s signal with a CallTimeoutError at timeoutMs and rejects fire with it', async () => {
      const breaker = breakerWith();
      let seen: AbortSignal | undefined;
      const call = track(
        breaker.fire((signal) => {
          seen = signal;
          return never();
        }),
      );
      await jest.advanceTimersByTimeAsync(999);
      expect(seen?.aborted).toBe(false);
      expect(call.current().status).toBe('pending');

      await jest.advanceTimersByTimeAsync(1);
      expect(seen?.aborted).toBe(true);
      expect(seen?.reason).toBeInstanceOf(CallTimeoutError);
      expect(seen?.reason).toMatchObject({ code: 'ETIMEDOUT', breaker: 'upstream', timeoutMs: 1_000 });
      const outcome = call.current();
      expect(outcome.status === 'rejected' && outcome.reason).toBe(seen?.reason);
    });

    it('rejects a task that ignores its signal at the time-out', async () => {
      const breaker = breakerWith();
      const call = track(breaker.fire(never));
      await jest.advanceTimersByTimeAsync(1_000);
      const outcome = call.current();
      expect(outcome.status === 'rejected' && outcome.reason).toBeInstanceOf(CallTimeoutError);
    });

    it('counts a time-out as a failure and as a timeout', async () => {
      const breaker = breakerWith();
      const call = track(breaker.fire(never));
      await jest.advanceTimersByTimeAsync(1_000);
      await call.settled;
      expect(breaker.snapshot()).toMatchObject({ failures: 1, stats: { failures: 1, timeouts: 1, successes: 0 } });
    });

    it('opens after failureThreshold consecutive time-outs', async () => {
      const breaker = breakerWith({ failureThreshold: 2 });
      const first = track(breaker.fire(never));
      await jest.advanceTimersByTimeAsync(1_000);
      await first.settled;
      const second = track(breaker.fire(never));
      await jest.advanceTimersByTimeAsync(1_000);
      await second.settled;
      expect(breaker.state).toBe('open');
    });

    it('counts a time-out even when classify would call the error harmless', async () => {
      const breaker = breakerWith();
      const call = track(breaker.fire(never, { classify: () => ({ counts: false }) }));
      await jest.advanceTimersByTimeAsync(1_000);
      await call.settled;
      expect(breaker.snapshot().stats).toMatchObject({ failures: 1, timeouts: 1 });
    });

    it('gives each call its own signal: one call’s time-out does not abort another call in flight', async () => {
      const breaker = breakerWith();
      const signals: AbortSignal[] = [];
      const second = deferred<string>();
      const firstCall = track(
        breaker.fire((signal) => {
          signals.push(signal);
          return never();
        }),
      );
      await jest.advanceTimersByTimeAsync(500);
      const secondCall = track(
        breaker.fire((signal) => {
          signals.push(signal);
          return second.promise;
        }),
      );
      await jest.advanceTimersByTimeAsync(500);

      expect(firstCall.current().status).toBe('rejected');
      expect(signals[0]?.aborted).toBe(true);
      expect(signals[1]?.aborted).toBe(false);
      expect(secondCall.current().status).toBe('pending');
      second.resolve('second answer');
      await expect(secondCall.settled).resolves.toEqual({ status: 'fulfilled', value: 'second answer' });
      expect(signals[1]?.aborted).toBe(false);
    });

    it('does not abort the signal of a call that finished in time', async () => {
      const breaker = breakerWith();
      let seen: AbortSignal | undefined;
      await breaker.fire(async (signal) => {
        seen = signal;
        return 'fast';
      });
      await jest.advanceTimersByTimeAsync(5_000);
      expect(seen?.aborted).toBe(false);
      expect(breaker.snapshot().stats).toMatchObject({ successes: 1, failures: 0, timeouts: 0 });
    });
  });

  describe('what the caller gets back', () => {
    it('resolves with the task’s value', async () => {
      const breaker = breakerWith();
      await expect(breaker.fire(() => Promise.resolve({ text: 'hi' }))).resolves.toEqual({ text: 'hi' });
    });

    it('rejects with the task’s own rejection, even one without a reason', async () => {
      const breaker = breakerWith();
      const outcome = await track(breaker.fire(() => Promise.reject(undefined))).settled;
      expect(outcome).toStrictEqual({ status: 'rejected', reason: undefined });
    });

    it('rejects with what a task throws before returning a promise, counted as a failure and never as a time-out', async () => {
      const breaker = breakerWith();
      const thrown = new UpstreamDown('client not initialised');
      const error = await rejectionOf(
        breaker.fire((): Promise<string> => {
          throw thrown;
        }),
      );
      await jest.advanceTimersByTimeAsync(OPTIONS.timeoutMs * 2);
      expect(error).toBe(thrown);
      expect(breaker.snapshot()).toMatchObject({ failures: 1, stats: { failures: 1, timeouts: 0 } });
    });
  });

  describe('errors that are not the upstream’s fault (classify → false)', () => {
    it('reaches the caller unchanged', async () => {
      const breaker = breakerWith();
      const badRequest = new BadRequest('422: prompt too long');
      const error = await rejectionOf(breaker.fire(() => Promise.reject(badRequest), { classify: isOutage }));
      expect(error).toBe(badRequest);
    });

    it('never opens the circuit, however many arrive', async () => {
      const breaker = breakerWith();
      for (let i = 0; i < 10; i++) {
        await rejectionOf(breaker.fire(() => Promise.reject(new BadRequest('400')), { classify: isOutage }));
      }
      expect(breaker.state).toBe('closed');
      expect(breaker.snapshot().failures).toBe(0);
    });

    it('is counted neither as a failure nor as a success', async () => {
      const breaker = breakerWith();
      await rejectionOf(breaker.fire(() => Promise.reject(new BadRequest('400')), { classify: isOutage }));
      expect(breaker.snapshot().stats).toMatchObject({ successes: 0, failures: 0, timeouts: 0 });
    });

    it('does not reset the consecutive failure count: 4 failures, 1 rejected request, 1 failure open the circuit', async () => {
      const breaker = breakerWith();
      await failTimes(breaker, 4);
      await rejectionOf(breaker.fire(() => Promise.reject(new BadRequest('400')), { classify: isOutage }));
      expect(breaker.snapshot().failures).toBe(4);
      await failTimes(breaker, 1);
      expect(breaker.state).toBe('open');
    });

    it('counts the error as a failure when classify itself throws, and still gives the caller the task’s error', async () => {
      const breaker = breakerWith();
      const brokenClassifier = (): FailureVerdict => {
        throw new TypeError('cannot read properties of undefined');
      };
      const badRequest = new BadRequest('400');
      for (let i = 0; i < OPTIONS.failureThreshold; i++) {
        expect(await rejectionOf(breaker.fire(() => Promise.reject(badRequest), { classify: brokenClassifier }))).toBe(badRequest);
      }
      expect(breaker.state).toBe('open');
    });

    it('still counts the errors classify accepts', async () => {
      const breaker = breakerWith();
      for (let i = 0; i < 5; i++) await rejectionOf(breaker.fire(upstreamDown, { classify: isOutage }));
      expect(breaker.state).toBe('open');
    });
  });

  describe('disabled (enabled: false)', () => {
    it('never opens and always calls the task, however many calls fail', async () => {
      const breaker = breakerWith({ enabled: false, failureThreshold: 2 });
      const task = jest.fn(upstreamDown);
      for (let i = 0; i < 10; i++) expect(await rejectionOf(breaker.fire(task))).toBeInstanceOf(UpstreamDown);
      expect(task).toHaveBeenCalledTimes(10);
      expect(breaker.state).toBe('closed');
      await expect(breaker.fire(ok)).resolves.toBe('ok');
    });

    it('still aborts and rejects a call at the time-out', async () => {
      const breaker = breakerWith({ enabled: false });
      let seen: AbortSignal | undefined;
      const call = track(
        breaker.fire((signal) => {
          seen = signal;
          return never();
        }),
      );
      await jest.advanceTimersByTimeAsync(999);
      expect(call.current().status).toBe('pending');
      await jest.advanceTimersByTimeAsync(1);
      const outcome = call.current();
      expect(outcome.status === 'rejected' && outcome.reason).toBeInstanceOf(CallTimeoutError);
      expect(seen?.reason).toBeInstanceOf(CallTimeoutError);
    });

    it('still counts successes, failures and time-outs in its stats', async () => {
      const breaker = breakerWith({ enabled: false });
      await breaker.fire(ok);
      await rejectionOf(breaker.fire(upstreamDown));
      const timedOut = track(breaker.fire(never));
      await jest.advanceTimersByTimeAsync(1_000);
      await timedOut.settled;
      expect(breaker.snapshot().stats).toMatchObject({ successes: 1, failures: 2, timeouts: 1 });
    });
  });

  describe('disabled: no fast-fail and nothing told to the circuit', () => {
    it('still starts nothing after shutdown', async () => {
      const breaker = breakerWith({ enabled: false });
      breaker.shutdown();
      const task = jest.fn(ok);
      expect(await rejectionOf(breaker.fire(task))).toBeInstanceOf(CircuitOpenError);
      expect(task).not.toHaveBeenCalled();
    });

    it('an open circuit does not refuse a disabled breaker’s calls, and a disabled breaker’s failures do not count toward opening', async () => {
      const breaker = breakerWith({ enabled: false, failureThreshold: 1 });
      await failTimes(breaker, 3);
      expect(breaker.snapshot()).toMatchObject({ state: 'closed', failures: 0, enabled: false, stats: { failures: 3, rejects: 0 } });
    });
  });

  describe('failure rate (CIRCUIT_BREAKER_FAILURE_RATE)', () => {
    const RATE = { failureRate: 0.5, windowMs: 10_000, minCalls: 10 };

    it('opens an upstream that fails every second call, which never reaches 5 failures in a row, once the window holds the minimum calls', async () => {
      const breaker = breakerWith(RATE);
      for (let i = 0; i < 4; i++) {
        await expect(breaker.fire(ok)).resolves.toBe('ok');
        await rejectionOf(breaker.fire(upstreamDown));
      }
      await expect(breaker.fire(ok)).resolves.toBe('ok');
      expect(breaker.state).toBe('closed');
      await rejectionOf(breaker.fire(upstreamDown));
      expect(breaker.snapshot()).toMatchObject({ state: 'open', failures: 1 });
    });

    it('stays closed below the rate, and with the policy off however many calls fail in turn', async () => {
      const below = breakerWith({ ...RATE, failureRate: 0.6 });
      const off = breakerWith();
      for (let i = 0; i < 20; i++) {
        for (const breaker of [below, off]) {
          await breaker.fire(ok);
          await rejectionOf(breaker.fire(upstreamDown));
        }
      }
      expect([below.state, off.state]).toEqual(['closed', 'closed']);
    });

    it('counts only the last window: calls older than the window are forgotten, bucket by bucket', async () => {
      const breaker = breakerWith(RATE);
      for (let i = 0; i < 4; i++) {
        await rejectionOf(breaker.fire(upstreamDown));
        await breaker.fire(ok);
      }
      await breaker.fire(ok);
      expect(breaker.state).toBe('closed');
      // With these nine, one more failure would be 5 of 10; the window has moved past them: it is 1 of 1 call.
      await jest.advanceTimersByTimeAsync(RATE.windowMs);
      await rejectionOf(breaker.fire(upstreamDown));
      expect(breaker.state).toBe('closed');
    });

    it('starts counting anew after the circuit closed again', async () => {
      const breaker = breakerWith({ ...RATE, failureThreshold: 100 });
      for (let i = 0; i < 5; i++) {
        await breaker.fire(ok);
        await rejectionOf(breaker.fire(upstreamDown));
      }
      expect(breaker.state).toBe('open');
      await jest.advanceTimersByTimeAsync(OPTIONS.resetTimeoutMs);
      await breaker.fire(ok);
      expect(breaker.state).toBe('closed');
      await rejectionOf(breaker.fire(upstreamDown));
      expect(breaker.state).toBe('closed');
    });
  });

  describe('a monotonic clock', () => {
    it('a wall clock stepped back an hour (NTP, a VM resumed) leaves the open period as long as it was', async () => {
      const breaker = await openedBreaker();
      jest.setSystemTime(Date.now() - 3_600_000);
      await jest.advanceTimersByTimeAsync(OPTIONS.resetTimeoutMs);
      expect(breaker.state).toBe('half_open');
      await expect(breaker.fire(ok)).resolves.toBe('ok');
      expect(breaker.state).toBe('closed');
    });

    it('a wall clock stepped forward does not end the open period early, and Retry-After still counts down the real period', async () => {
      const breaker = await openedBreaker();
      jest.setSystemTime(Date.now() + 3_600_000);
      expect(breaker.state).toBe('open');
      expect(breaker.retryAfterSeconds()).toBe(30);
      expect(Date.parse(breaker.snapshot().nextAttemptAt ?? '') - Date.now()).toBe(30_000);
    });
  });

  describe('our own resource errors (EMFILE, ENOBUFS…: a verdict with local)', () => {
    const ours = (): FailureVerdict => ({ counts: false, local: true });

    it('never count toward opening', async () => {
      const breaker = breakerWith({ failureThreshold: 1 });
      for (let i = 0; i < 3; i++) await rejectionOf(breaker.fire(upstreamDown, { classify: ours }));
      expect(breaker.snapshot()).toMatchObject({ state: 'closed', failures: 0 });
    });

    it('as a half-open trial, free the trial instead of closing the circuit (the upstream proved nothing)', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(OPTIONS.resetTimeoutMs);
      await rejectionOf(breaker.fire(upstreamDown, { classify: ours }));
      expect(breaker.state).toBe('half_open');
      await rejectionOf(breaker.fire(upstreamDown));
      expect(breaker.state).toBe('open');
    });
  });

  describe('retryAfterSeconds', () => {
    it('counts the seconds to the trial, rounded up', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(10_200);
      expect(breaker.retryAfterSeconds()).toBe(20);
      const error = await rejectionOf(breaker.fire(ok));
      expect(error).toMatchObject({ retryAfterSeconds: 20 });
    });

    it('is at least 1 just before the trial', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(29_900);
      expect(breaker.retryAfterSeconds()).toBe(1);
    });

    it('reads half-open, with a Retry-After of 1, as soon as the open period has passed (no timer needed)', async () => {
      const breaker = await openedBreaker();
      jest.advanceTimersByTime(START.getTime() + 45_000 - Date.now());
      expect(breaker.state).toBe('half_open');
      expect(breaker.retryAfterSeconds()).toBe(1);
    });

    it('rounds a fraction of a second up, never down', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(10_700);
      expect(breaker.retryAfterSeconds()).toBe(20);
    });

    it('is the whole reset time right after opening, rounded up', async () => {
      const breaker = await openedBreaker({ resetTimeoutMs: 2_400 });
      expect(breaker.retryAfterSeconds()).toBe(3);
    });

    it('tells the calls refused during the half-open trial to retry in 1 second', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(30_000);
      const trial = deferred<string>();
      const trialCall = track(breaker.fire(() => trial.promise));
      expect(await rejectionOf(breaker.fire(ok))).toMatchObject({ retryAfterSeconds: 1 });
      trial.resolve('ok');
      await trialCall.settled;
    });
  });

  describe('snapshot', () => {
    it('shows a closed breaker without openedAt or nextAttemptAt', async () => {
      const breaker = breakerWith();
      await failTimes(breaker, 2);
      const snapshot = breaker.snapshot();
      expect(snapshot).toMatchObject({ name: 'upstream', state: 'closed', enabled: true, failures: 2, failureThreshold: 5 });
      expect(snapshot).not.toHaveProperty('openedAt');
      expect(snapshot).not.toHaveProperty('nextAttemptAt');
    });

    it('shows when an open breaker opened and when its trial is due, as ISO strings', async () => {
      const breaker = breakerWith();
      await jest.advanceTimersByTimeAsync(4_000);
      await failTimes(breaker, 5);
      expect(breaker.snapshot()).toMatchObject({
        state: 'open',
        failures: 5,
        openedAt: '2030-01-01T00:00:04.000Z',
        nextAttemptAt: '2030-01-01T00:00:34.000Z',
      });
    });

    it('shows openedAt and nextAttemptAt exactly one open period apart, though the wall clock ticks between readings', async () => {
      const breaker = await openedBreaker();
      // The wall clock ticks in whole milliseconds, the monotonic one does not: here it ticks at every reading.
      const wall = Date.now();
      let readings = 0;
      const ticking = jest.spyOn(Date, 'now').mockImplementation(() => wall + readings++);
      const { openedAt, nextAttemptAt } = breaker.snapshot();
      ticking.mockRestore();
      expect(Date.parse(nextAttemptAt ?? '') - Date.parse(openedAt ?? '')).toBe(30_000);
    });

    it('drops openedAt and nextAttemptAt once half-open', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(30_000);
      const snapshot = breaker.snapshot();
      expect(snapshot.state).toBe('half_open');
      expect(snapshot).not.toHaveProperty('openedAt');
      expect(snapshot).not.toHaveProperty('nextAttemptAt');
    });

    it('moves nextAttemptAt a full period past a failed trial', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(30_000);
      await rejectionOf(breaker.fire(upstreamDown));
      expect(breaker.snapshot()).toMatchObject({
        openedAt: '2030-01-01T00:00:30.000Z',
        nextAttemptAt: '2030-01-01T00:01:00.000Z',
      });
    });

    it('counts successes, failures, rejects and fallbacks since start', async () => {
      const breaker = breakerWith({ failureThreshold: 2 });
      await breaker.fire(ok);
      await breaker.fire(ok);
      await failTimes(breaker, 2);
      await rejectionOf(breaker.fire(ok));
      breaker.recordFallback();
      breaker.recordFallback();
      breaker.recordFallback();
      await jest.advanceTimersByTimeAsync(30_000);
      await breaker.fire(ok);
      expect(breaker.snapshot().stats).toEqual({ successes: 3, failures: 2, timeouts: 0, rejects: 1, overloaded: 0, fallbacks: 3 });
    });

    it('keeps its stats when the circuit closes again', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(30_000);
      await breaker.fire(ok);
      expect(breaker.snapshot().stats).toMatchObject({ failures: 5, successes: 1 });
    });
  });

  describe('transition log', () => {
    function transitions(): Array<Record<string, unknown>> {
      return logSpy.mock.calls
        .map(([message]) => message as unknown)
        .filter((message): message is Record<string, unknown> => {
          return typeof message === 'object' && message !== null && (message as { event?: unknown }).event === 'circuit_breaker_transition';
        });
    }

    it('logs nothing while the circuit stays closed', async () => {
      const breaker = breakerWith();
      await failTimes(breaker, 4);
      await breaker.fire(ok);
      expect(transitions()).toEqual([]);
    });

    it('logs every transition once, as a structured object', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(30_000);
      await rejectionOf(breaker.fire(upstreamDown));
      await jest.advanceTimersByTimeAsync(30_000);
      await breaker.fire(ok);

      expect(transitions()).toEqual([
        {
          event: 'circuit_breaker_transition',
          breaker: 'upstream',
          scope: 'replica',
          from: 'closed',
          to: 'open',
          failures: 5,
          nextAttemptAt: '2030-01-01T00:00:30.000Z',
          cause: { kind: 'error', status: null },
        },
        {
          event: 'circuit_breaker_transition',
          breaker: 'upstream',
          scope: 'replica',
          from: 'open',
          to: 'half_open',
          failures: 5,
          nextAttemptAt: null,
        },
        {
          event: 'circuit_breaker_transition',
          breaker: 'upstream',
          scope: 'replica',
          from: 'half_open',
          to: 'open',
          failures: 6,
          nextAttemptAt: '2030-01-01T00:01:00.000Z',
          cause: { kind: 'error', status: null },
        },
        {
          event: 'circuit_breaker_transition',
          breaker: 'upstream',
          scope: 'replica',
          from: 'open',
          to: 'half_open',
          failures: 6,
          nextAttemptAt: null,
        },
        {
          event: 'circuit_breaker_transition',
          breaker: 'upstream',
          scope: 'replica',
          from: 'half_open',
          to: 'closed',
          failures: 0,
          nextAttemptAt: null,
        },
      ]);
    });

    it('logs one transition when concurrent failures pass the threshold together', async () => {
      const breaker = breakerWith({ failureThreshold: 2 });
      const pending = [deferred<string>(), deferred<string>(), deferred<string>()];
      const calls = pending.map((d) => track(breaker.fire(() => d.promise)));
      for (const d of pending) d.reject(new UpstreamDown('503'));
      await Promise.all(calls.map((call) => call.settled));
      expect(breaker.state).toBe('open');
      expect(transitions().map(({ from, to }) => `${String(from)}→${String(to)}`)).toEqual(['closed→open']);
    });
  });

  describe('onEvent', () => {
    function observed(breaker: CircuitBreaker): CircuitBreakerEvent[] {
      const events: CircuitBreakerEvent[] = [];
      breaker.onEvent((event) => events.push(event));
      return events;
    }

    const delayed =
      <T>(ms: number, settle: () => Promise<T>) =>
      () =>
        new Promise<void>((resolve) => setTimeout(resolve, ms)).then(settle);

    it('reports a success with how long the call took', async () => {
      const breaker = breakerWith();
      const events = observed(breaker);
      const call = breaker.fire(delayed(120, ok));
      await jest.advanceTimersByTimeAsync(120);
      await call;
      expect(events).toEqual([{ breaker: 'upstream', type: 'success', durationMs: 120 }]);
    });

    it('reports each failure with its duration, then the transition when the threshold is reached', async () => {
      const breaker = breakerWith({ failureThreshold: 2 });
      const events = observed(breaker);
      await failTimes(breaker, 2);
      expect(events).toEqual([
        { breaker: 'upstream', type: 'failure', durationMs: 0 },
        { breaker: 'upstream', type: 'failure', durationMs: 0 },
        { breaker: 'upstream', type: 'open' },
      ]);
    });

    it('reports a time-out as a failure plus a timeout that carries the duration', async () => {
      const breaker = breakerWith();
      const events = observed(breaker);
      const call = track(breaker.fire(never));
      await jest.advanceTimersByTimeAsync(1_000);
      await call.settled;
      expect(events).toEqual([
        { breaker: 'upstream', type: 'failure' },
        { breaker: 'upstream', type: 'timeout', durationMs: 1_000 },
      ]);
    });

    it('reports an error classify rejects as neutral, with its duration', async () => {
      const breaker = breakerWith();
      const events = observed(breaker);
      await rejectionOf(breaker.fire(() => Promise.reject(new BadRequest('422')), { classify: isOutage }));
      expect(events).toEqual([{ breaker: 'upstream', type: 'neutral', durationMs: 0 }]);
    });

    it('reports refusals without a duration, and half-open before a successful trial, close after it', async () => {
      const breaker = await openedBreaker();
      const events = observed(breaker);
      await rejectionOf(breaker.fire(ok));
      await jest.advanceTimersByTimeAsync(30_000);
      await breaker.fire(ok);
      expect(events.map(({ type }) => type)).toEqual(['reject', 'half_open', 'success', 'close']);
      expect(events[0]).toEqual({ breaker: 'upstream', type: 'reject' });
    });

    it('stops reporting to a listener once it unsubscribes', async () => {
      const breaker = breakerWith();
      const events: CircuitBreakerEvent[] = [];
      const unsubscribe = breaker.onEvent((event) => events.push(event));
      await breaker.fire(ok);
      unsubscribe();
      await breaker.fire(ok);
      expect(events).toHaveLength(1);
    });

    it('keeps the call’s outcome and the breaker’s counts when a listener throws', async () => {
      const breaker = breakerWith({ failureThreshold: 1 });
      const warnSpy = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      breaker.onEvent(() => {
        throw new Error('observer bug');
      });
      await expect(breaker.fire(ok)).resolves.toBe('ok');
      expect(await rejectionOf(breaker.fire(upstreamDown))).toBeInstanceOf(UpstreamDown);
      expect(breaker.state).toBe('open');
      expect(breaker.snapshot().stats).toMatchObject({ successes: 1, failures: 1 });
      expect(warnSpy).toHaveBeenCalled();
      warnSpy.mockRestore();
    });
  });

  describe('shutdown', () => {
    it('leaves no timer behind after the circuit has opened', async () => {
      const breaker = await openedBreaker();
      breaker.shutdown();
      expect(jest.getTimerCount()).toBe(0);
    });

    it('leaves no timer behind for a call still in flight', async () => {
      const breaker = breakerWith();
      const call = track(breaker.fire(never));
      breaker.shutdown();
      expect(jest.getTimerCount()).toBe(0);
      await jest.advanceTimersByTimeAsync(1_000);
      await call.settled;
    });

    it('calls no task after shutdown, and says so: the state reads open', async () => {
      const breaker = breakerWith();
      breaker.shutdown();
      const task = jest.fn(ok);
      expect(await rejectionOf(breaker.fire(task))).toBeInstanceOf(CircuitOpenError);
      expect(task).not.toHaveBeenCalled();
      expect(breaker.state).toBe('open');
    });

    it('ends a call still in flight without counting it either way', async () => {
      const breaker = breakerWith();
      const call = track(breaker.fire(never));
      breaker.shutdown();
      expect(await rejectionOf(call.settled.then((o) => (o.status === 'rejected' ? Promise.reject(o.reason) : o)))).toMatchObject({
        name: 'BreakerShutdownError',
      });
      expect(breaker.snapshot()).toMatchObject({ stats: { failures: 0, successes: 0 }, inFlight: 0 });
    });
  });

  describe('outcomes of calls that started before the last state change (never change the state)', () => {
    /** A call that starts while closed and outlives the opening, then the half-open trial, both still running. */
    async function slowCallDuringTrial() {
      const breaker = breakerWith({ timeoutMs: 60_000 });
      const slow = deferred<string>();
      const slowCall = track(breaker.fire(() => slow.promise));
      await failTimes(breaker, 5);
      await jest.advanceTimersByTimeAsync(30_000);
      const trial = deferred<string>();
      const trialCall = track(breaker.fire(() => trial.promise));
      return { breaker, slow, slowCall, trial, trialCall };
    }

    it('a slow success that lands during the half-open trial does not close the circuit; the trial decides', async () => {
      const { breaker, slow, slowCall, trial, trialCall } = await slowCallDuringTrial();
      slow.resolve('late');
      await slowCall.settled;
      expect(breaker.state).toBe('half_open');
      trial.reject(new UpstreamDown('503'));
      await trialCall.settled;
      expect(breaker.state).toBe('open');
    });

    it('a slow failure that lands during the trial does not re-open it; the trial’s success closes it', async () => {
      const { breaker, slow, slowCall, trial, trialCall } = await slowCallDuringTrial();
      slow.reject(new UpstreamDown('503'));
      await slowCall.settled;
      expect(breaker.state).toBe('half_open');
      trial.resolve('ok');
      await trialCall.settled;
      expect(breaker.state).toBe('closed');
    });

    it('a late success while open leaves the consecutive failures as they were', async () => {
      const breaker = breakerWith({ timeoutMs: 60_000 });
      const slow = deferred<string>();
      const slowCall = track(breaker.fire(() => slow.promise));
      await failTimes(breaker, 5);
      slow.resolve('late');
      await slowCall.settled;
      expect(breaker.snapshot()).toMatchObject({ state: 'open', failures: 5 });
    });
  });

  describe('a caller that went away', () => {
    it('frees the half-open trial it held: the next call is the new trial, and nothing else changes', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(30_000);
      const client = new AbortController();
      const abandoned = track(
        breaker.fire(untilAborted, {
          signal: client.signal,
        }),
      );
      expect(await rejectionOf(breaker.fire(ok))).toBeInstanceOf(CircuitOpenError);
      client.abort();
      await abandoned.settled;
      expect(breaker.snapshot()).toMatchObject({ state: 'half_open', failures: 5 });
      await expect(breaker.fire(ok)).resolves.toBe('ok');
      expect(breaker.state).toBe('closed');
    });

    it('with a signal already aborted: the task never runs, no trial is taken, nothing is counted', async () => {
      const breaker = await openedBreaker();
      await jest.advanceTimersByTimeAsync(30_000);
      const task = jest.fn(ok);
      await rejectionOf(breaker.fire(task, { signal: AbortSignal.abort() }));
      expect(task).not.toHaveBeenCalled();
      expect(breaker.snapshot()).toMatchObject({ state: 'half_open', stats: { successes: 0, failures: 5, rejects: 0 } });
      await expect(breaker.fire(ok)).resolves.toBe('ok');
    });
  });

  describe('bulkhead (maxConcurrent)', () => {
    it('refuses the call past the limit at once with BulkheadFullError, without counting it or running it', async () => {
      const breaker = breakerWith({ maxConcurrent: 2 });
      const pending = [deferred<string>(), deferred<string>()];
      const running = pending.map((d) => track(breaker.fire(() => d.promise)));
      const task = jest.fn(ok);
      const refused = await rejectionOf(breaker.fire(task));
      expect(refused).toBeInstanceOf(BulkheadFullError);
      expect(task).not.toHaveBeenCalled();
      expect(breaker.snapshot()).toMatchObject({
        state: 'closed',
        failures: 0,
        inFlight: 2,
        maxConcurrent: 2,
        stats: { overloaded: 1, failures: 0 },
      });
      pending[0]?.resolve('done');
      await running[0]?.settled;
      await expect(breaker.fire(ok)).resolves.toBe('ok');
    });

    it('gives a slot back however a call ends: success, failure, time-out or its caller going away', async () => {
      const breaker = breakerWith({ maxConcurrent: 1 });
      await breaker.fire(ok);
      await rejectionOf(breaker.fire(upstreamDown));
      const timedOut = track(breaker.fire(never));
      await jest.advanceTimersByTimeAsync(1_000);
      await timedOut.settled;
      const client = new AbortController();
      const gone = track(
        breaker.fire(untilAborted, {
          signal: client.signal,
        }),
      );
      client.abort();
      await gone.settled;
      expect(breaker.snapshot().inFlight).toBe(0);
      await expect(breaker.fire(ok)).resolves.toBe('ok');
    });
  });

  describe('failures that say more than "failed"', () => {
    const verdictOf = (verdict: FailureVerdict) => () => verdict;

    it('opens at once, without waiting for the threshold, for a failure that hits every request alike', async () => {
      const breaker = breakerWith();
      await rejectionOf(
        breaker.fire(upstreamDown, { classify: verdictOf({ counts: true, kind: 'http', status: 402, opensAtOnce: true }) }),
      );
      expect(breaker.snapshot()).toMatchObject({
        state: 'open',
        failures: 1,
        lastFailure: { kind: 'http', status: 402, at: START.toISOString() },
      });
    });

    it('holds the circuit open for an upstream wait hint longer than the reset period', async () => {
      const breaker = breakerWith();
      await rejectionOf(breaker.fire(upstreamDown, { classify: verdictOf({ counts: true, status: 429, holdOpenMs: 90_000 }) }));
      expect(breaker.snapshot()).toMatchObject({ state: 'open', nextAttemptAt: new Date(START.getTime() + 90_000).toISOString() });
      expect(breaker.retryAfterSeconds()).toBe(90);
    });

    it('opens for the reset period when the hint is shorter, and never longer than maxOpenMs', async () => {
      const short = breakerWith();
      await rejectionOf(short.fire(upstreamDown, { classify: verdictOf({ counts: true, status: 503, holdOpenMs: 3_000 }) }));
      expect(short.retryAfterSeconds()).toBe(30);
      const capped = breakerWith({ maxOpenMs: 120_000 });
      await rejectionOf(capped.fire(upstreamDown, { classify: verdictOf({ counts: true, status: 429, holdOpenMs: 31_536_000_000 }) }));
      expect(capped.retryAfterSeconds()).toBe(120);
    });

    it('reports whole seconds, rounded up, for a fractional hint (Retry-After takes an integer)', () => {
      expect(breakerWith().retryAfterSeconds(1.5)).toBe(2);
    });

    it('caps every Retry-After it reports, an upstream hint passed on while closed included', () => {
      expect(breakerWith({ maxOpenMs: 300_000 }).retryAfterSeconds(31_536_000)).toBe(300);
      expect(breakerWith().retryAfterSeconds(7)).toBe(7);
    });
  });

  describe('reset backoff', () => {
    it('grows the open period by the backoff after each failed trial, up to maxOpenMs, with ±10 % jitter (only downward at the cap)', async () => {
      const randoms = [0, 1, 0.5];
      const breaker = new CircuitBreaker('upstream', { ...OPTIONS, resetBackoff: 2, maxOpenMs: 100_000 }, () => randoms.shift() ?? 0.5);
      breakers.push(breaker);
      await failTimes(breaker, 5);
      const periods: number[] = [];
      for (let trial = 0; trial < 3; trial++) {
        const next = Date.parse(breaker.snapshot().nextAttemptAt ?? '');
        periods.push(next - Date.now());
        jest.advanceTimersByTime(next - Date.now());
        await rejectionOf(breaker.fire(upstreamDown));
      }
      periods.push(Date.parse(breaker.snapshot().nextAttemptAt ?? '') - Date.now());
      // 30 s, then 60 s × 0.9; from then on the cap, which jitter only shortens (so replicas still spread): 100 s × 0.9, × 0.95
      expect(periods).toEqual([30_000, 54_000, 90_000, 95_000]);
    });

    it('keeps a fixed period with the default backoff of 1', async () => {
      const breaker = await openedBreaker();
      for (let trial = 0; trial < 3; trial++) {
        jest.advanceTimersByTime(Date.parse(breaker.snapshot().nextAttemptAt ?? '') - Date.now());
        await rejectionOf(breaker.fire(upstreamDown));
        expect(Date.parse(breaker.snapshot().nextAttemptAt ?? '') - Date.now()).toBe(30_000);
      }
    });
  });
});
