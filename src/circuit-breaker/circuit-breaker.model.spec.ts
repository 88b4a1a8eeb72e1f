import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import fc from 'fast-check';
import { CircuitBreaker, type CircuitBreakerOptions, type FailureVerdict } from './circuit-breaker.js';
import { BulkheadFullError, CircuitOpenError } from './circuit-breaker.errors.js';
import { propertyRunParameters } from '../../test/support/fast-check-replay.js';

// Model-based test: random interleavings of call starts, outcomes, client aborts and clock steps, run against the
// real CircuitBreaker on Jest's fake clock and against a small reference model of the contract's state machine;
// after every step both must agree on the state, the consecutive failures, the calls in flight and every
// admission decision (run, refused while open or during the trial, refused by the bulkhead).
//
// Replay a failure with the seed and path fast-check prints: FC_SEED=<seed> FC_PATH=<path> npm run test:unit

type State = 'closed' | 'open' | 'half_open';
type Admission = 'run' | 'refused' | 'overloaded';
type Ending =
  { kind: 'success' } | { kind: 'rejected' } | { kind: 'abandoned' } | { kind: 'failure'; opensAtOnce?: boolean; holdMs?: number };

type Config = Omit<CircuitBreakerOptions, 'enabled'>;

interface ModelCall {
  id: number;
  generation: number;
  trial: boolean;
  deadline: number;
}

/** The contract, written as plainly as possible; the clock is passed in. */
class ReferenceCircuit {
  state: State = 'closed';
  failures = 0;
  inFlight: ModelCall[] = [];
  private generation = 0;
  private openUntil = 0;
  private failedTrials = 0;
  private trialTaken = false;

  constructor(private readonly config: Config) {}

  observe(now: number): State {
    if (this.state === 'open' && now >= this.openUntil) this.changeTo('half_open');
    return this.state;
  }

  start(id: number, now: number): Admission {
    const state = this.observe(now);
    if (state === 'open' || (state === 'half_open' && this.trialTaken)) return 'refused';
    if (this.inFlight.length >= this.config.maxConcurrent) return 'overloaded';
    const trial = state === 'half_open';
    if (trial) this.trialTaken = true;
    this.inFlight.push({ id, generation: this.generation, trial, deadline: now + this.config.timeoutMs });
    return 'run';
  }

  end(id: number, ending: Ending, now: number): void {
    const call = this.inFlight.find((c) => c.id === id);
    if (!call) return;
    this.inFlight = this.inFlight.filter((c) => c.id !== id);
    this.observe(now);
    // An outcome from before the last state change never changes the state.
    if (call.generation !== this.generation) return;
    if (call.trial) {
      this.trialTaken = false;
      if (ending.kind === 'abandoned') return;
      if (ending.kind === 'failure') {
        this.failures++;
        this.failedTrials++;
        this.open(now, this.periodAfterFailedTrials(), ending.holdMs);
      } else {
        this.failures = 0;
        this.failedTrials = 0;
        this.changeTo('closed');
      }
      return;
    }
    if (ending.kind === 'success') this.failures = 0;
    if (ending.kind !== 'failure') return;
    this.failures++;
    if (ending.opensAtOnce || ending.holdMs !== undefined || this.failures >= this.config.failureThreshold) {
      this.open(now, this.config.resetTimeoutMs, ending.holdMs);
    }
  }

  /** Calls whose time-out falls in (now, until], earliest first (ties in start order, as timers fire). */
  timeoutsUntil(until: number): ModelCall[] {
    return this.inFlight.filter((c) => c.deadline <= until).sort((a, b) => a.deadline - b.deadline || a.id - b.id);
  }

  /** Backoff per failed trial; jitter (fixed at its middle here: random 0.5) is ±10 % below the cap, -5 % at it. */
  private periodAfterFailedTrials(): number {
    const { resetTimeoutMs, resetBackoff, maxOpenMs } = this.config;
    if (resetBackoff === 1) return resetTimeoutMs;
    const grown = resetTimeoutMs * resetBackoff ** this.failedTrials;
    return grown >= maxOpenMs ? maxOpenMs * 0.95 : grown;
  }

  private open(now: number, periodMs: number, holdMs = 0): void {
    this.openUntil = now + Math.min(this.config.maxOpenMs, Math.max(periodMs, holdMs));
    this.changeTo('open');
  }

  private changeTo(state: State): void {
    this.state = state;
    this.generation++;
  }
}

type Step =
  | { t: 'start' }
  | { t: 'end'; pick: number; ending: 'success' | 'failure' | 'rejected' | 'fatal' | 'hint'; hintSeconds: number }
  | { t: 'abort'; pick: number }
  | { t: 'tick'; ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.constant<Step>({ t: 'start' }) },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant('end' as const),
      pick: fc.nat(),
      ending: fc.constantFrom('success' as const, 'failure' as const, 'rejected' as const, 'fatal' as const, 'hint' as const),
      hintSeconds: fc.integer({ min: 1, max: 6 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('abort' as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 4000 }) }) },
);

const config: fc.Arbitrary<Config> = fc.record({
  failureThreshold: fc.integer({ min: 1, max: 3 }),
  timeoutMs: fc.constantFrom(500, 1000, 3000),
  resetTimeoutMs: fc.constantFrom(1000, 2000),
  maxOpenMs: fc.constantFrom(3000, 300_000),
  resetBackoff: fc.constantFrom(1, 2),
  maxConcurrent: fc.constantFrom(1, 3, 100),
  streamIdleTimeoutMs: fc.constant(1000),
  failureRate: fc.constant(0),
  windowMs: fc.constant(30_000),
  minCalls: fc.constant(20),
});

class UpstreamDown extends Error {}
class BadRequest extends Error {}
/** Fails every request alike (credentials, credits): opens at once. */
class Fatal extends Error {}
class RateLimited extends Error {
  constructor(readonly seconds: number) {
    super('429');
  }
}

const classify = (error: unknown): FailureVerdict => {
  if (error instanceof BadRequest) return { counts: false };
  if (error instanceof Fatal) return { counts: true, kind: 'http', status: 401, opensAtOnce: true };
  if (error instanceof RateLimited) return { counts: true, kind: 'http', status: 429, holdOpenMs: error.seconds * 1000 };
  return { counts: true };
};

interface RealCall {
  id: number;
  resolve: () => void;
  reject: (error: Error) => void;
  abort: () => void;
}

const START = new Date('2030-01-01T00:00:00.000Z').getTime();

/** Lets every settled promise run its callbacks (the breaker's bookkeeping is a few microtasks deep). */
async function flush(): Promise<void> {
  await jest.advanceTimersByTimeAsync(0);
}

async function runScenario(cfg: Config, steps: Step[]): Promise<void> {
  const options: CircuitBreakerOptions = { enabled: true, ...cfg };
  // No jitter: the model's period is exact (the jitter itself is tested in circuit-breaker.spec.ts).
  const breaker = new CircuitBreaker('model', options, () => 0.5);
  const model = new ReferenceCircuit(cfg);
  const calls = new Map<number, RealCall>();
  let nextId = 0;
  const now = () => Date.now();
  const agree = (where: string) => {
    const snapshot = breaker.snapshot();
    expect({ where, state: snapshot.state, failures: snapshot.failures, inFlight: snapshot.inFlight }).toEqual({
      where,
      state: model.observe(now()),
      failures: model.failures,
      inFlight: model.inFlight.length,
    });
  };
  const pickCall = (pick: number) => {
    const live = model.inFlight;
    return live.length === 0 ? undefined : live[pick % live.length];
  };

  try {
    for (const [i, s] of steps.entries()) {
      const where = `step ${i}: ${JSON.stringify(s)}`;
      if (s.t === 'start') {
        const id = nextId++;
        const controller = new AbortController();
        let admission: Admission = 'run';
        let settle: Pick<RealCall, 'resolve' | 'reject'> | undefined;
        const task = (signal: AbortSignal) =>
          new Promise<string>((resolve, reject) => {
            settle = { resolve: () => resolve('ok'), reject };
            signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
          });
        breaker.fire(task, { classify, signal: controller.signal }).catch((error: unknown) => {
          if (error instanceof CircuitOpenError) admission = 'refused';
          if (error instanceof BulkheadFullError) admission = 'overloaded';
        });
        await flush();
        const expected = model.start(id, now());
        expect({ where, admission }).toEqual({ where, admission: expected });
        if (expected === 'run' && settle) {
          const { resolve, reject } = settle;
          calls.set(id, { id, resolve, reject, abort: () => controller.abort(new Error('client went away')) });
        }
      } else if (s.t === 'end') {
        const target = pickCall(s.pick);
        if (target) {
          const real = calls.get(target.id);
          const ending: Ending =
            s.ending === 'success'
              ? { kind: 'success' }
              : s.ending === 'rejected'
                ? { kind: 'rejected' }
                : s.ending === 'fatal'
                  ? { kind: 'failure', opensAtOnce: true }
                  : s.ending === 'hint'
                    ? { kind: 'failure', holdMs: s.hintSeconds * 1000 }
                    : { kind: 'failure' };
          if (s.ending === 'success') real?.resolve();
          else if (s.ending === 'rejected') real?.reject(new BadRequest('422'));
          else if (s.ending === 'fatal') real?.reject(new Fatal('401'));
          else if (s.ending === 'hint') real?.reject(new RateLimited(s.hintSeconds));
          else real?.reject(new UpstreamDown('503'));
          await flush();
          model.end(target.id, ending, now());
          calls.delete(target.id);
        }
      } else if (s.t === 'abort') {
        const target = pickCall(s.pick);
        if (target) {
          calls.get(target.id)?.abort();
          await flush();
          model.end(target.id, { kind: 'abandoned' }, now());
          calls.delete(target.id);
        }
      } else {
        const until = now() + s.ms;
        for (const timedOut of model.timeoutsUntil(until)) {
          await jest.advanceTimersByTimeAsync(timedOut.deadline - now());
          model.end(timedOut.id, { kind: 'failure' }, now());
          calls.delete(timedOut.id);
        }
        await jest.advanceTimersByTimeAsync(until - now());
      }
      agree(where);
    }
  } finally {
    breaker.shutdown();
    await flush();
  }
}

describe('CircuitBreaker against a reference model of the contract', () => {
  beforeEach(() => {
    jest.useFakeTimers({ now: START });
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
  });

  afterEach(() => {
    jest.restoreAllMocks();
    jest.useRealTimers();
  });

  it('agrees with the model on state, failures, calls in flight and every admission, under any interleaving', async () => {
    await fc.assert(
      fc.asyncProperty(config, fc.array(step, { minLength: 1, maxLength: 60 }), async (cfg, steps) => {
        jest.setSystemTime(START);
        await runScenario(cfg, steps);
      }),
      propertyRunParameters(2000),
    );
  }, 120_000);
});
