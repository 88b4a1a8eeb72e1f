// The seams of askTargets (failover.ts) a review found, over real breakers and scripted clients: each `it` states what
// the contract promises, and each failed before its fix.
import { afterEach, describe, expect, it } from '@jest/globals';
import { TEST_BREAKER_CONFIG } from '../../test/support/breaker-config.js';
import { UseCircuitBreaker } from '../circuit-breaker/circuit-breaker.decorator.js';
import { CircuitBreakerRegistry } from '../circuit-breaker/circuit-breaker.registry.js';
import type { ChatPrompt, Generation, HfTextGenClient } from '../hf-textgen/hf-textgen.client.js';
import { ModelCallFailedError, modelFailureVerdict } from '../hf-textgen/hf-textgen.errors.js';
import { ModelTarget } from '../hf-textgen/model-targets.js';
import { askTargets, type FailoverOptions } from './failover.js';

const PROMPT: ChatPrompt = { system: 's', user: 'u' };

/**
 * hang: never answers until aborted. A streamed script: the first piece after `firstAfterMs`, then `pieces`
 * (each after `gapMs`), then either the end or `failAfter` (a mid-stream failure).
 */
type Script =
  'hang' | 'fail' | { slowMs: number } | { firstAfterMs: number; first?: string; pieces?: string[]; gapMs?: number; failAfter?: boolean };

class ScriptedClient {
  script: Script = { slowMs: 0 };
  calls = 0;
  aborted = 0;
  readonly configured = true;

  constructor(readonly model: string) {}

  @UseCircuitBreaker({ classify: modelFailureVerdict })
  async generate(_prompt: ChatPrompt, signal?: AbortSignal): Promise<Generation> {
    this.calls++;
    const script = this.script;
    if (script === 'fail') throw new ModelCallFailedError('http', 'HTTP 500', 500);
    await this.wait(script === 'hang' ? undefined : 'slowMs' in script ? script.slowMs : script.firstAfterMs, signal);
    return { text: `answer from ${this.model}`, model: this.model };
  }

  @UseCircuitBreaker({ classify: modelFailureVerdict, stream: true })
  generateStream(_prompt: ChatPrompt, signal?: AbortSignal): Promise<AsyncIterableIterator<string>> {
    this.calls++;
    const script = this.script;
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the generator below is a function of its own
    const client = this;
    if (script === 'fail') return Promise.reject(new ModelCallFailedError('http', 'HTTP 500', 500));
    // Like the real client: nothing is requested until the first piece is read.
    return Promise.resolve(
      (async function* () {
        if (script === 'hang') {
          await client.wait(undefined, signal);
          return;
        }
        if ('slowMs' in script) {
          await client.wait(script.slowMs, signal);
          yield `from ${client.model} `;
          yield 'to the end';
          return;
        }
        await client.wait(script.firstAfterMs, signal);
        yield script.first ?? `from ${client.model} `;
        for (const piece of script.pieces ?? []) {
          await client.wait(script.gapMs ?? 0, signal);
          yield piece;
        }
        if (script.failAfter) throw new ModelCallFailedError('network', 'The connection was cut mid-stream');
      })(),
    );
  }

  private wait(ms: number | undefined, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = ms === undefined ? undefined : setTimeout(resolve, ms);
      signal?.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          this.aborted++;
          reject(new DOMException('aborted', 'AbortError'));
        },
        { once: true },
      );
    });
  }
}

let registry: CircuitBreakerRegistry | undefined;
afterEach(() => registry?.onApplicationShutdown());

function targetsOf(config: Partial<typeof TEST_BREAKER_CONFIG>, ...models: string[]) {
  registry = new CircuitBreakerRegistry({ ...TEST_BREAKER_CONFIG, failureThreshold: 1, ...config });
  const clients = models.map((model) => new ScriptedClient(model));
  const targets = clients.map((client, i) => {
    const name = i === 0 ? 'huggingface' : `huggingface:${client.model}`;
    registry!.guard(client, name);
    const timeoutMs = config.timeoutMs ?? TEST_BREAKER_CONFIG.timeoutMs;
    return new ModelTarget(client.model, registry!.get(name), client as unknown as HfTextGenClient, 10, timeoutMs);
  });
  return { targets, clients };
}

function counted(target: ModelTarget) {
  const { successes, failures, timeouts } = target.breaker.snapshot().stats;
  return { successes, failures, timeouts, state: target.breaker.state, inFlight: target.breaker.snapshot().inFlight };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('ASSISTANT_DEADLINE_SECONDS equal to the breaker time-out (the shipped defaults, 30 and 30)', () => {
  // circuit-breaker.config.ts: timeoutMs = min(CIRCUIT_BREAKER_TIMEOUT_SECONDS, ASSISTANT_DEADLINE_SECONDS); askTargets
  // then sees leftMs = deadline - (a few µs) < timeoutMs for the FIRST call, so it is "cut by the deadline" and its
  // time-out counts neither way. A hanging primary never opens its circuit.
  it("counts a hanging first target's time-out as a failure (JSON)", async () => {
    const { targets, clients } = targetsOf({ timeoutMs: 300 }, 'a', 'b');
    clients[0].script = 'hang';
    const options: FailoverOptions = { deadlineMs: 300, hedgeAfterMs: 0 };
    const asked = await askTargets(targets, PROMPT, undefined, false, options);
    expect(asked.passed.map(({ reason }) => reason)[0]).toBe('timeout');
    // The contract: "time-out ... counts as a failure". failureThreshold is 1 here, so the circuit must open.
    expect(counted(targets[0])).toMatchObject({ failures: 1, timeouts: 1, state: 'open' });
  });

  it("counts a hanging first target's time-out as a failure (SSE)", async () => {
    const { targets, clients } = targetsOf({ timeoutMs: 300 }, 'a', 'b');
    clients[0].script = 'hang';
    const asked = await askTargets(targets, PROMPT, undefined, true, { deadlineMs: 300, hedgeAfterMs: 0 });
    expect(asked.answered).toBe(false);
    expect(counted(targets[0])).toMatchObject({ failures: 1, timeouts: 1, state: 'open' });
  });
});

describe('a caller already gone when askTargets starts (it left during the cache lookup)', () => {
  // Attempt adds its abort forwarder to the caller's signal with addEventListener: for a signal that is ALREADY
  // aborted the listener never runs, so the call goes out on a live signal of its own.
  it('makes no model call and counts nothing when the call runs on an AbortController of its own (deadline-cut)', async () => {
    const { targets, clients } = targetsOf({ timeoutMs: 2_000 }, 'a', 'b');
    clients[0].script = { slowMs: 100 };
    const caller = new AbortController();
    caller.abort(new Error('client gone'));
    // 1 s left < the 2 s time-out: the first call gets a controller of its own (as with the 30/30 defaults).
    await expect(askTargets(targets, PROMPT, caller.signal, false, { deadlineMs: 1_000, hedgeAfterMs: 0 })).rejects.toThrow('client gone');
    // Received: the call went out for nobody and its success counted on A's breaker.
    expect({ calls: clients[0].calls, ...counted(targets[0]) }).toMatchObject({ calls: 0, successes: 0, failures: 0 });
  });

  it('the same with hedging on', async () => {
    const { targets, clients } = targetsOf({ timeoutMs: 2_000 }, 'a', 'b');
    clients[0].script = { slowMs: 100 };
    const caller = new AbortController();
    caller.abort(new Error('client gone'));
    await expect(askTargets(targets, PROMPT, caller.signal, false, { deadlineMs: 5_000, hedgeAfterMs: 1_000 })).rejects.toThrow(
      'client gone',
    );
    // Received: the call went out for nobody and its success counted on A's breaker.
    expect({ calls: clients[0].calls, ...counted(targets[0]) }).toMatchObject({ calls: 0, successes: 0, failures: 0 });
  });

  it('control: on the caller’s own signal (deadline longer than the time-out) nothing is called', async () => {
    const { targets, clients } = targetsOf({ timeoutMs: 2_000 }, 'a', 'b');
    clients[0].script = { slowMs: 100 };
    const caller = new AbortController();
    caller.abort(new Error('client gone'));
    await expect(askTargets(targets, PROMPT, caller.signal, false, { deadlineMs: 5_000, hedgeAfterMs: 0 })).rejects.toThrow('client gone');
    expect(clients[0].calls).toBe(0);
  });
});

describe('hedged JSON answer whose winner fails after its first piece', () => {
  // A is hedged at 100 ms; A's first piece (150 ms) beats B's (400 ms), so B is aborted as a "hedge loser" and is not
  // listed. A then fails mid-stream while its JSON answer is collected: nothing has been sent to the client, so the
  // next target should be asked, but `next` already points past B: no target is left and the fallbacks answer.
  it('still asks the healthy hedge target (B) and answers from it', async () => {
    const { targets, clients } = targetsOf({ timeoutMs: 2_000 }, 'a', 'b');
    clients[0].script = { firstAfterMs: 150, pieces: ['more'], gapMs: 50, failAfter: true };
    clients[1].script = { firstAfterMs: 400 };
    const asked = await askTargets(targets, PROMPT, undefined, false, { deadlineMs: 5_000, hedgeAfterMs: 100 });
    expect(clients[1].calls).toBeGreaterThanOrEqual(1); // B was asked (the hedge) ...
    expect(asked).toMatchObject({ answered: true, model: 'b' }); // ... and B, healthy, should give the answer
  });

  it('with three targets, lists every target passed over (B is skipped silently)', async () => {
    const { targets, clients } = targetsOf({ timeoutMs: 2_000 }, 'a', 'b', 'c');
    clients[0].script = { firstAfterMs: 150, pieces: ['more'], gapMs: 50, failAfter: true };
    clients[1].script = { firstAfterMs: 400 };
    clients[2].script = { firstAfterMs: 0 };
    const asked = await askTargets(targets, PROMPT, undefined, false, { deadlineMs: 5_000, hedgeAfterMs: 100 });
    // B is asked again, and hedged in its turn after 100 ms without a first piece: C, quicker, answers, and both A and B
    // are listed (B passed over as slow). Before the fix, B was dropped silently.
    expect({ model: asked.answered && asked.model, passed: asked.passed.map(({ model, reason }) => `${model}:${reason}`) }).toEqual({
      model: 'c',
      passed: ['a:upstream_error', 'b:timeout'],
    });
  });
});

describe('a hedge (a LATER target) that fails while the first target is still on its way', () => {
  // The hedge B fails at once (open circuit, full bulkhead or a 500) and is recorded in `passed`; A then answers, and
  // the body says model A with failover [B]: the contract lists only EARLIER targets passed over.
  it('the answer from A lists no failover (JSON)', async () => {
    const { targets, clients } = targetsOf({ timeoutMs: 2_000 }, 'a', 'b');
    clients[0].script = { firstAfterMs: 250 };
    clients[1].script = 'fail';
    const asked = await askTargets(targets, PROMPT, undefined, false, { deadlineMs: 5_000, hedgeAfterMs: 100 });
    expect({ model: asked.answered && asked.model, passed: asked.passed.map(({ model, reason }) => `${model}:${reason}`) }).toEqual({
      model: 'a',
      passed: [],
    });
  });

  it('the answer from A lists no failover (SSE), also when B only had an open circuit', async () => {
    const { targets, clients } = targetsOf({ timeoutMs: 2_000 }, 'a', 'b');
    clients[1].script = 'fail';
    await askTargets([targets[1]], PROMPT, undefined, false, { deadlineMs: 5_000, hedgeAfterMs: 0 }); // opens B
    clients[0].script = { firstAfterMs: 250 };
    const asked = await askTargets(targets, PROMPT, undefined, true, { deadlineMs: 5_000, hedgeAfterMs: 100 });
    if (asked.answered && 'pieces' in asked) await asked.pieces.return?.();
    expect({ model: asked.answered && asked.model, passed: asked.passed.map(({ model, reason }) => `${model}:${reason}`) }).toEqual({
      model: 'a',
      passed: [],
    });
  });
});

describe('hedged JSON answer that is only white space', () => {
  // generate() (no hedging) refuses a blank answer (protocol failure, next target); collect() returns '' as an answer.
  it('is not an answer: the next target answers', async () => {
    const { targets, clients } = targetsOf({ timeoutMs: 2_000 }, 'a', 'b');
    clients[0].script = { firstAfterMs: 0, first: '  ', pieces: ['\n'] };
    const asked = await askTargets(targets, PROMPT, undefined, false, { deadlineMs: 5_000, hedgeAfterMs: 1_000 });
    // A blank answer would be cached and served as `source: llm` with `answer: ""`.
    expect(asked.answered && 'text' in asked && { model: asked.model, text: asked.text }).toEqual({
      model: 'b',
      text: 'from b to the end',
    });
  });
});

describe('timers left behind', () => {
  it('clears the deadline timer of the call that settled when the caller left', async () => {
    const { targets, clients } = targetsOf({ timeoutMs: 10_000 }, 'a');
    clients[0].script = 'hang';
    const caller = new AbortController();
    const timersBefore = process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
    const asked = askTargets(targets, PROMPT, caller.signal, false, { deadlineMs: 5_000, hedgeAfterMs: 0 });
    await sleep(50);
    caller.abort(new Error('client gone'));
    await expect(asked).rejects.toThrow('client gone');
    await sleep(10);
    const timersAfter = process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
    // The 5 s deadline timer of the abandoned call stays armed (not unref'd) after the request is gone.
    expect(timersAfter).toBeLessThanOrEqual(timersBefore);
  });
});

describe('seams that hold (expected to pass)', () => {
  it('a half-open trial taken by a hedge that loses is freed: the next call is the trial', async () => {
    const { targets, clients } = targetsOf({ timeoutMs: 2_000, resetTimeoutMs: 100 }, 'a', 'b');
    clients[1].script = 'fail';
    await askTargets([targets[1]], PROMPT, undefined, false, { deadlineMs: 5_000, hedgeAfterMs: 0 });
    expect(targets[1].breaker.state).toBe('open');
    await sleep(150);
    expect(targets[1].breaker.state).toBe('half_open');
    clients[0].script = { firstAfterMs: 200 };
    clients[1].script = 'hang';
    const asked = await askTargets(targets, PROMPT, undefined, false, { deadlineMs: 5_000, hedgeAfterMs: 50 });
    expect(asked).toMatchObject({ answered: true, model: 'a' });
    expect(clients[1].calls).toBe(2); // the hedge took B's trial ...
    clients[1].script = { slowMs: 0 };
    const trial = await askTargets([targets[1]], PROMPT, undefined, false, { deadlineMs: 5_000, hedgeAfterMs: 0 });
    expect(trial).toMatchObject({ answered: true, model: 'b' }); // ... and gave it back
    expect(targets[1].breaker.state).toBe('closed');
  });

  it('a hedge loser whose first piece lands just after the winner gives back its bulkhead slot and is aborted', async () => {
    const { targets, clients } = targetsOf({ timeoutMs: 2_000 }, 'a', 'b');
    clients[0].script = { firstAfterMs: 150, pieces: ['x'], gapMs: 0 };
    clients[1].script = { firstAfterMs: 52, pieces: ['y'], gapMs: 1_000 }; // hedged at 100 → first piece ~152
    const asked = await askTargets(targets, PROMPT, undefined, true, { deadlineMs: 5_000, hedgeAfterMs: 100 });
    if (!asked.answered || !('pieces' in asked)) throw new Error('expected a stream');
    for await (const _ of asked.pieces) void _;
    await sleep(100);
    expect(targets.map((target) => counted(target).inFlight)).toEqual([0, 0]);
    expect(counted(targets[1])).toMatchObject({ successes: 0, failures: 0 });
  });

  it('CIRCUIT_BREAKER_ENABLED=false: an open-worthy failure on A does not fast-fail A, B answers each time', async () => {
    const { targets, clients } = targetsOf({ enabled: false }, 'a', 'b');
    clients[0].script = 'fail';
    const models: string[] = [];
    for (let i = 0; i < 3; i++) {
      const asked = await askTargets(targets, PROMPT, undefined, true, { deadlineMs: 5_000, hedgeAfterMs: 0 });
      if (asked.answered) models.push(asked.model);
      if (asked.answered && 'pieces' in asked) await asked.pieces.return?.();
    }
    expect(models).toEqual(['b', 'b', 'b']);
    expect(clients[0].calls).toBe(3);
  });
});

// ---- the whole chain (AssistantModule, the HF client over HTTP to the fake upstream) ----

describe('AssistantService.stream ended at the excerpts event when there is no fallback', () => {
  // With no excerpts and no cached answer, chain() yields `excerpts` only after askTargets returned the first piece,
  // and that yield sits BEFORE the try/finally that returns `pieces`. A consumer that stops there (return()) leaves
  // the guarded stream running: socket open and bulkhead slot held until HF_STREAM_IDLE_TIMEOUT_SECONDS.
  let upstream: import('../../test/support/fake-hf-upstream.js').FakeHfUpstream;
  let moduleRef: import('@nestjs/testing').TestingModule | undefined;

  afterEach(async () => {
    await moduleRef?.close();
    moduleRef = undefined;
    await upstream?.close();
  });

  it('return() ends the model stream at once (socket closed, bulkhead slot given back)', async () => {
    const { FakeHfUpstream } = await import('../../test/support/fake-hf-upstream.js');
    const { Test } = await import('@nestjs/testing');
    const { ConfigModule } = await import('@nestjs/config');
    const { AssistantModule } = await import('./assistant.module.js');
    const { AssistantService } = await import('./assistant.service.js');
    const { mkdtemp, writeFile } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    upstream = await FakeHfUpstream.start();
    const knowledgeDir = await mkdtemp(join(tmpdir(), 'review-kb-'));
    await writeFile(join(knowledgeDir, 'breaker.md'), '# Circuit breaker\n\nThe half-open trial lets one call through.\n');
    Object.assign(process.env, {
      HF_ENDPOINT_URL: upstream.url,
      HF_TOKEN: '',
      HF_FALLBACK_MODELS: '',
      KNOWLEDGE_DIR: knowledgeDir,
      CIRCUIT_BREAKER_TIMEOUT_SECONDS: '2',
      HF_STREAM_IDLE_TIMEOUT_SECONDS: '5',
      REDIS_URL: '',
    });
    moduleRef = await Test.createTestingModule({
      imports: [ConfigModule.forRoot({ isGlobal: true, ignoreEnvFile: true }), AssistantModule],
    }).compile();
    await moduleRef.init();
    const assistant = moduleRef.get(AssistantService);
    const breaker = moduleRef.get(CircuitBreakerRegistry).get('huggingface');
    upstream.setFault({ kind: 'slowTokens', tokenIntervalMs: 200, answer: 'a b c d e f g h i j k l m n o p q r s t u v w x y z' });

    const events = assistant.stream({ query: 'zyxwv qqqqq' }); // no excerpt matches: no fallback
    const first = await events.next();
    expect(first.value).toMatchObject({ type: 'excerpts', excerpts: [] });
    await events.return();
    await sleep(300);
    expect({ inFlight: breaker.snapshot().inFlight, abortedByClient: upstream.abortedByClient }).toEqual({
      inFlight: 0,
      abortedByClient: 1,
    });
  });
});
