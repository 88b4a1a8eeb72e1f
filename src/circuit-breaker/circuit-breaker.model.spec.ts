import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import fc from 'fast-check';
import { TEST_BREAKER_CONFIG } from '../../test/support/breaker-config.js';
import { CircuitContractModel, type ModelOutcome } from '../../test/support/circuit-contract-model.js';
import { propertyRunParameters } from '../../test/support/fast-check-replay.js';
import { CircuitBreaker, type CircuitBreakerOptions, type FailureVerdict } from './circuit-breaker.js';
import { BulkheadFullError, CircuitOpenError } from './circuit-breaker.errors.js';
import type { GuardedStream } from './guarded-stream.js';
import { monotonicNow } from './monotonic-clock.js';

// Model-based test of the whole CircuitBreaker on Jest's fake timers (which also fake performance.now, the breaker's
// monotonic clock): random interleavings of plain and streamed calls, upstream answers, stream reads, consumers that
// stop, callers that go away and clock steps, on enabled and disabled breakers (CIRCUIT_BREAKER_ENABLED=false).
// Every circuit decision is the contract's reference model's (test/support/circuit-contract-model.ts); this file adds
// only what the contract gives the breaker on top of its circuit, in BreakerModel: the bulkhead, the per-call
// time-out, a stream's first-item and idle time-outs, a consumer that stops pulling, the caller's abort, and a
// disabled breaker. After every step the breaker and the model must agree on each admission (run, refused by the
// circuit, overloaded), the state, the consecutive failures, the calls in flight and the stats. The fixed examples
// after the property are counterexamples it found, against the breaker or against mutants of it.
//
// Replay a failure with the seed and path fast-check prints: FC_SEED=<seed> FC_PATH=<path> npm run test:unit
// (FC_RUNS=<n> for a longer search).

type Shape = 'plain' | 'stream';
type Admission = 'run' | 'refused' | 'overloaded';

/** What the upstream sends a call: for a stream, one more item or its end; for a plain call both are its answer. */
type Answer =
  | { kind: 'item' }
  | { kind: 'end' }
  /** 400/422 about this prompt: counts neither way; as a trial it closes the circuit (the upstream answered). */
  | { kind: 'bad_request' }
  /** 503, a network error, an error event inside a 200 stream: a failure. */
  | { kind: 'down' }
  /** 401, credits exhausted, unknown model: fails every request alike and opens at once. */
  | { kind: 'fatal' }
  /** 429 with Retry-After: opens at once for the hint. */
  | { kind: 'rate_limited'; seconds: number }
  /** EMFILE and the like, the replica's own: does not count; as a trial the upstream proved nothing, so it frees it. */
  | { kind: 'local' };

function outcomeOf(answer: Answer): ModelOutcome {
  switch (answer.kind) {
    case 'item':
    case 'end':
      return { kind: 'success' };
    case 'bad_request':
      return { kind: 'rejected' };
    case 'down':
      return { kind: 'failure' };
    case 'fatal':
      return { kind: 'fatal' };
    case 'rate_limited':
      return { kind: 'hint', holdMs: answer.seconds * 1000 };
    case 'local':
      return { kind: 'abandoned' };
  }
}

/** A call in flight, as the contract sees it. */
interface ModelCall {
  id: number;
  shape: Shape;
  /**
   * running: a plain call; first: a stream before its first item; holding: the consumer has an item and has not asked
   * for the next; pulling: the consumer asked and waits.
   */
  phase: 'running' | 'first' | 'holding' | 'pulling';
  /** What the upstream sent that the consumer has not pulled yet (the first item included). */
  unread: Answer[];
  /** The upstream sent its end or an error: it sends nothing more. */
  finished: boolean;
  /** When the breaker ends the call itself: the time-out, a stall, or nobody pulling for the idle time-out. */
  deadline: number;
  /** Ties between deadlines go in the order they were set. */
  deadlineOrder: number;
}

interface ModelStats {
  successes: number;
  failures: number;
  timeouts: number;
  rejects: number;
  overloaded: number;
}

/** The breaker as the contract describes it: the reference circuit decides, the rest is the breaker's own. */
class BreakerModel {
  readonly circuit: CircuitContractModel;
  readonly calls: ModelCall[] = [];
  readonly stats: ModelStats = { successes: 0, failures: 0, timeouts: 0, rejects: 0, overloaded: 0 };
  private deadlinesSet = 0;

  constructor(private readonly options: CircuitBreakerOptions) {
    // A disabled breaker is a replica the circuit never refuses and never counts. The replica's own circuit holds
    // its trial until the trial's outcome: a lease that never runs out.
    this.circuit = new CircuitContractModel({ ...options, leaseMs: Number.POSITIVE_INFINITY }, [options.enabled]);
  }

  start(id: number, shape: Shape, now: number): Admission {
    if (this.circuit.admit(id, 0, now) === 'refused') {
      this.stats.rejects++;
      return 'refused';
    }
    if (this.calls.length >= this.options.maxConcurrent) {
      // Refused by the bulkhead: counts neither way, and a trial it had taken is free again.
      this.circuit.settle(id, { kind: 'abandoned' }, now);
      this.stats.overloaded++;
      return 'overloaded';
    }
    this.calls.push({
      id,
      shape,
      phase: shape === 'plain' ? 'running' : 'first',
      unread: [],
      finished: false,
      // The per-call time-out; for a stream, the time to its first item.
      deadline: now + this.options.timeoutMs,
      deadlineOrder: this.deadlinesSet++,
    });
    return 'run';
  }

  /** The calls `pick` may choose from for a step, newest first. */
  candidates(step: 'answer' | 'pull' | 'stop' | 'abort'): ModelCall[] {
    const fits = (call: ModelCall): boolean => {
      if (step === 'answer') return !call.finished;
      if (step === 'pull') return call.phase === 'holding';
      if (step === 'stop') return call.phase === 'holding' || call.phase === 'pulling';
      return true;
    };
    return this.calls.filter(fits).reverse();
  }

  answer(call: ModelCall, answer: Answer, now: number): void {
    call.finished = answer.kind !== 'item';
    if (call.phase === 'running') this.end(call, outcomeOf(answer), now);
    else if (call.phase === 'pulling') this.deliver(call, answer, now);
    else if (call.phase === 'holding') call.unread.push(answer);
    else if (answer.kind === 'item' || answer.kind === 'end') {
      // The first item (or an empty stream's end) arrived: the stream is the caller's, and its consumer must pull.
      call.unread.push(answer);
      this.hold(call, now);
    } else {
      this.end(call, outcomeOf(answer), now);
    }
  }

  pull(call: ModelCall, now: number): void {
    const next = call.unread.shift();
    if (next) {
      this.deliver(call, next, now);
    } else {
      call.phase = 'pulling';
      // The longest gap between two items: longer is a stall, a failure.
      this.setDeadline(call, now + this.options.streamIdleTimeoutMs);
    }
  }

  /** The consumer's early return(), or the caller going away: counts neither way; gives back the place and any trial. */
  abandon(call: ModelCall, now: number): void {
    this.end(call, { kind: 'abandoned' }, now);
  }

  /** The call whose deadline comes first, if it comes by `until`. */
  nextDeadline(until: number): ModelCall | undefined {
    let first: ModelCall | undefined;
    for (const call of this.calls) {
      if (call.deadline > until) continue;
      if (!first || call.deadline < first.deadline || (call.deadline === first.deadline && call.deadlineOrder < first.deadlineOrder)) {
        first = call;
      }
    }
    return first;
  }

  /** The breaker ends `call` at its deadline: a consumer that stopped pulling is abandoned, anything else timed out. */
  expire(call: ModelCall): void {
    if (call.phase === 'holding') this.abandon(call, call.deadline);
    else this.end(call, { kind: 'failure' }, call.deadline, true);
  }

  /** The consumer receives `answer`: an item (it holds it), the end (a success) or an error. */
  private deliver(call: ModelCall, answer: Answer, now: number): void {
    if (answer.kind === 'item') this.hold(call, now);
    else this.end(call, outcomeOf(answer), now);
  }

  private hold(call: ModelCall, now: number): void {
    call.phase = 'holding';
    // A consumer that does not pull for the idle time-out has the call ended, as abandoned.
    this.setDeadline(call, now + this.options.streamIdleTimeoutMs);
  }

  private setDeadline(call: ModelCall, at: number): void {
    call.deadline = at;
    call.deadlineOrder = this.deadlinesSet++;
  }

  private end(call: ModelCall, outcome: ModelOutcome, now: number, timedOut = false): void {
    this.calls.splice(this.calls.indexOf(call), 1);
    if (outcome.kind === 'success') this.stats.successes++;
    if (outcome.kind === 'failure' || outcome.kind === 'fatal' || outcome.kind === 'hint') this.stats.failures++;
    if (timedOut) this.stats.timeouts++;
    // No jitter: the breaker's random source is 0.5 too.
    this.circuit.settle(call.id, outcome, now, 0.5);
  }
}

class BadRequest extends Error {}
class UpstreamDown extends Error {}
class Fatal extends Error {}
class RateLimited extends Error {
  constructor(readonly seconds: number) {
    super('429');
  }
}
class OutOfSockets extends Error {}

const classify = (error: unknown): FailureVerdict => {
  if (error instanceof BadRequest) return { counts: false };
  if (error instanceof OutOfSockets) return { counts: false, local: true };
  if (error instanceof Fatal) return { counts: true, kind: 'http', status: 401, opensAtOnce: true };
  if (error instanceof RateLimited) return { counts: true, kind: 'http', status: 429, holdOpenMs: error.seconds * 1000 };
  return { counts: true };
};

function errorFor(answer: Answer): Error {
  switch (answer.kind) {
    case 'bad_request':
      return new BadRequest('422');
    case 'fatal':
      return new Fatal('401');
    case 'rate_limited':
      return new RateLimited(answer.seconds);
    case 'local':
      return new OutOfSockets('EMFILE');
    default:
      return new UpstreamDown('503');
  }
}

/** The upstream of a plain call: its task settles when the test answers, and rejects on abort as fetch does. */
class PlainUpstream {
  private settle?: (answer: Answer) => void;

  readonly task = (signal: AbortSignal): Promise<string> =>
    new Promise<string>((resolve, reject) => {
      this.settle = (answer) => (answer.kind === 'item' || answer.kind === 'end' ? resolve('answer') : reject(errorFor(answer)));
      signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
    });

  send(answer: Answer): void {
    this.settle?.(answer);
  }
}

/** The upstream of a streamed call: sends items, its end or an error when the test says; like a fetch body it keeps what was not read yet. */
class StreamUpstream {
  private readonly unread: Array<IteratorResult<string> | Error> = [];
  private reader?: { resolve: (result: IteratorResult<string>) => void; reject: (error: Error) => void };

  readonly task = (): Promise<AsyncIterable<string>> => Promise.resolve({ [Symbol.asyncIterator]: () => ({ next: () => this.read() }) });

  send(answer: Answer): void {
    const next: IteratorResult<string> | Error =
      answer.kind === 'item'
        ? { value: 'token', done: false }
        : answer.kind === 'end'
          ? { value: undefined, done: true }
          : errorFor(answer);
    const reader = this.reader;
    this.reader = undefined;
    if (!reader) this.unread.push(next);
    else if (next instanceof Error) reader.reject(next);
    else reader.resolve(next);
  }

  private read(): Promise<IteratorResult<string>> {
    const next = this.unread.shift();
    if (next instanceof Error) return Promise.reject(next);
    if (next) return Promise.resolve(next);
    return new Promise((resolve, reject) => (this.reader = { resolve, reject }));
  }
}

/** The test's side of a call in flight: its caller, its upstream and, once fireStream resolved, the stream it reads. */
interface RealCall {
  caller: AbortController;
  upstream: PlainUpstream | StreamUpstream;
  stream?: GuardedStream<string>;
}

type Step =
  | { t: 'call'; shape: Shape }
  | { t: 'answer'; pick: number; answer: Answer }
  | { t: 'pull'; pick: number }
  | { t: 'stop'; pick: number }
  | { t: 'abort'; pick: number }
  | { t: 'tick'; ms: number };

// Counted from the newest candidate; 0 (the newest: often the trial) half of the time.
const pick = fc.oneof(fc.constant(0), fc.nat());

const answers: fc.Arbitrary<Answer> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom<Answer>({ kind: 'item' }, { kind: 'item' }, { kind: 'end' }) },
  { weight: 3, arbitrary: fc.constant<Answer>({ kind: 'down' }) },
  { weight: 1, arbitrary: fc.constantFrom<Answer>({ kind: 'bad_request' }, { kind: 'fatal' }, { kind: 'local' }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 6 }).map<Answer>((seconds) => ({ kind: 'rate_limited', seconds })) },
);

const steps: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant('call' as const), shape: fc.constantFrom<Shape>('plain', 'stream') }) },
  { weight: 5, arbitrary: fc.record({ t: fc.constant('answer' as const), pick, answer: answers }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('pull' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('stop' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('abort' as const), pick }) },
  {
    weight: 3,
    // Short steps too, so that streams live long enough to be read, stall and complete.
    arbitrary: fc.record({
      t: fc.constant('tick' as const),
      ms: fc.oneof(fc.integer({ min: 0, max: 4000 }), fc.integer({ min: 0, max: 400 })),
    }),
  },
);

const configs: fc.Arbitrary<CircuitBreakerOptions> = fc.record({
  // One case in four is a disabled breaker: no fast-fail, nothing counted, only the bulkhead and the time-outs.
  enabled: fc.constantFrom(true, true, true, false),
  failureThreshold: fc.integer({ min: 1, max: 3 }),
  timeoutMs: fc.constantFrom(500, 1000, 3000),
  streamIdleTimeoutMs: fc.constantFrom(300, 1000, 2000),
  resetTimeoutMs: fc.constantFrom(1000, 2000),
  maxOpenMs: fc.constantFrom(3000, 300_000),
  resetBackoff: fc.constantFrom(1, 2),
  maxConcurrent: fc.constantFrom(1, 2, 3, 100),
  failureRate: fc.constantFrom(0, 0, 0.5, 1),
  windowMs: fc.constantFrom(2000, 10_000),
  minCalls: fc.integer({ min: 1, max: 4 }),
});

/** Lets every settled promise run its callbacks (the breaker's bookkeeping is a few microtasks deep). */
async function flush(): Promise<void> {
  await jest.advanceTimersByTimeAsync(0);
}

/** Plays `script` on a breaker and on the model, comparing them after every step. */
async function agreesWithModel(options: CircuitBreakerOptions, script: readonly Step[]): Promise<void> {
  const breaker = new CircuitBreaker('model', options, () => 0.5);
  const model = new BreakerModel(options);
  const real = new Map<number, RealCall>();
  let nextId = 0;

  const start = async (shape: Shape, where: string): Promise<void> => {
    const id = nextId++;
    const call: RealCall = { caller: new AbortController(), upstream: shape === 'plain' ? new PlainUpstream() : new StreamUpstream() };
    let admission: Admission = 'run';
    const refused = (error: unknown) => {
      if (error instanceof CircuitOpenError) admission = 'refused';
      if (error instanceof BulkheadFullError) admission = 'overloaded';
    };
    const guard = { classify, signal: call.caller.signal };
    if (call.upstream instanceof PlainUpstream) {
      breaker.fire(call.upstream.task, guard).catch(refused);
    } else {
      breaker.fireStream(call.upstream.task, guard).then((stream) => (call.stream = stream), refused);
    }
    await flush();
    expect({ where, admission }).toEqual({ where, admission: model.start(id, shape, monotonicNow()) });
    if (admission === 'run') real.set(id, call);
  };

  const streamOf = (call: ModelCall, where: string): GuardedStream<string> => {
    const stream = real.get(call.id)?.stream;
    if (!stream) throw new Error(`${where}: fireStream has not resolved for call ${call.id}`);
    return stream;
  };

  try {
    for (const [i, step] of script.entries()) {
      const where = `step ${i}: ${JSON.stringify(step)}`;
      const now = monotonicNow();
      if (step.t === 'call') {
        await start(step.shape, where);
      } else if (step.t === 'tick') {
        const until = now + step.ms;
        for (let due = model.nextDeadline(until); due; due = model.nextDeadline(until)) {
          await jest.advanceTimersByTimeAsync(due.deadline - monotonicNow());
          model.expire(due);
        }
        await jest.advanceTimersByTimeAsync(until - monotonicNow());
      } else {
        const candidates = model.candidates(step.t);
        const call = candidates[step.pick % Math.max(1, candidates.length)];
        if (call) {
          if (step.t === 'answer') {
            real.get(call.id)!.upstream.send(step.answer);
            model.answer(call, step.answer, now);
          } else if (step.t === 'pull') {
            streamOf(call, where)
              .next()
              .catch(() => undefined);
            model.pull(call, now);
          } else if (step.t === 'stop') {
            void streamOf(call, where).return();
            model.abandon(call, now);
          } else {
            real.get(call.id)!.caller.abort(new Error('client went away'));
            model.abandon(call, now);
          }
          await flush();
        }
      }
      const snapshot = breaker.snapshot();
      const { successes, failures, timeouts, rejects, overloaded } = snapshot.stats;
      expect({ where, state: snapshot.state, failures: snapshot.failures, inFlight: snapshot.inFlight }).toEqual({
        where,
        state: model.circuit.state(monotonicNow()),
        failures: model.circuit.failures,
        inFlight: model.calls.length,
      });
      expect({ where, stats: { successes, failures, timeouts, rejects, overloaded } }).toEqual({ where, stats: model.stats });
    }
  } finally {
    breaker.shutdown();
    await flush();
  }
}

const START = new Date('2030-01-01T00:00:00.000Z').getTime();

describe('CircuitBreaker against the contract: its circuit, bulkhead, time-outs, streams, aborts and enabled flag', () => {
  beforeEach(() => {
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
  });

  afterEach(() => {
    jest.restoreAllMocks();
    jest.useRealTimers();
  });

  /** A fresh fake clock per case, so that a replayed case sees the same times (and window buckets) as the run that found it. */
  async function scenario(options: CircuitBreakerOptions, script: readonly Step[]): Promise<void> {
    jest.useFakeTimers({ now: START });
    await agreesWithModel(options, script);
  }

  it('agrees with the model on every admission, the state, the failures, the calls in flight and the stats, under any interleaving', async () => {
    await fc.assert(
      // size 'max': without it fast-check keeps scripts to about ten steps whatever maxLength says.
      fc.asyncProperty(configs, fc.array(steps, { minLength: 1, maxLength: 60, size: 'max' }), scenario),
      propertyRunParameters(600),
    );
  }, 120_000);

  const oneAtATime: CircuitBreakerOptions = { ...TEST_BREAKER_CONFIG, failureThreshold: 1, maxConcurrent: 1 };
  const call = (shape: Shape): Step => ({ t: 'call', shape });
  const answer = (kind: Exclude<Answer['kind'], 'rate_limited'>): Step => ({ t: 'answer', pick: 0, answer: { kind } });
  /** A failure opens the circuit; after the reset period it is half-open. */
  const halfOpen: Step[] = [call('plain'), answer('down'), { t: 'tick', ms: oneAtATime.resetTimeoutMs }];

  // Found by the property against the breaker itself ([stream, item, abort]): the caller of a streamed trial went away
  // while its consumer held an item, and the breaker kept the place and the trial until the next read or the idle
  // time-out, refusing the next call the contract makes the new trial.
  it('a streamed trial whose caller goes away while its consumer holds an item frees the trial and its place at once', async () => {
    await scenario(oneAtATime, [...halfOpen, call('stream'), answer('item'), { t: 'abort', pick: 0 }, call('plain')]);
  });

  // Found by the property against a breaker that took a local error (EMFILE) for a rejection: that closed the circuit.
  it("a trial that ends in the replica's own error frees the trial and leaves the circuit half-open", async () => {
    await scenario(oneAtATime, [...halfOpen, call('plain'), answer('local'), call('plain')]);
  });

  // Found by the property against a disabled breaker that asked its circuit: a wait hint opened it.
  it('a disabled breaker counts nothing, not even a wait hint, and still has its bulkhead and time-out', async () => {
    await scenario({ ...oneAtATime, enabled: false }, [
      call('plain'),
      { t: 'answer', pick: 0, answer: { kind: 'rate_limited', seconds: 1 } },
      call('stream'),
      call('plain'),
      { t: 'tick', ms: oneAtATime.timeoutMs },
      call('plain'),
    ]);
  });

  // Found by the property against a breaker that asked its bulkhead first: a taken trial refuses as the circuit, not as overloaded.
  it('a half-open circuit whose trial is running refuses the next call as the circuit, with its bulkhead full', async () => {
    await scenario(oneAtATime, [...halfOpen, call('plain'), call('plain')]);
  });
});
