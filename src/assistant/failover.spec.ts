import { afterEach, describe, expect, it } from '@jest/globals';
import { TEST_BREAKER_CONFIG } from '../../test/support/breaker-config.js';
import { UseCircuitBreaker } from '../circuit-breaker/circuit-breaker.decorator.js';
import { CircuitBreakerRegistry } from '../circuit-breaker/circuit-breaker.registry.js';
import type { ChatPrompt, Generation, HfTextGenClient } from '../hf-textgen/hf-textgen.client.js';
import { ModelCallFailedError, ModelRequestRejectedError, modelFailureVerdict } from '../hf-textgen/hf-textgen.errors.js';
import { ModelTarget } from '../hf-textgen/model-targets.js';
import { askTargets, type FailoverOptions } from './failover.js';

// askTargets over real breakers and scripted clients: which target answers, what is passed over and why, what each
// breaker counts, and that nothing is left running.

type Script = 'ok' | 'fail' | 'reject' | 'hang' | { slowMs: number } | { failAfterMs: number };

const PROMPT: ChatPrompt = { system: 's', user: 'u' };

/** A model client whose every call does what its script says; it records the calls and their aborts. */
class ScriptedClient {
  script: Script = 'ok';
  calls = 0;
  aborted = 0;
  readonly configured = true;

  constructor(readonly model: string) {}

  @UseCircuitBreaker({ classify: modelFailureVerdict })
  async generate(_prompt: ChatPrompt, signal?: AbortSignal): Promise<Generation> {
    await this.begin(signal);
    return { text: `answer from ${this.model}`, model: this.model };
  }

  @UseCircuitBreaker({ classify: modelFailureVerdict, stream: true })
  async generateStream(_prompt: ChatPrompt, signal?: AbortSignal): Promise<AsyncIterableIterator<string>> {
    await this.begin(signal);
    const model = this.model;
    return (async function* () {
      yield `from ${model} `;
      yield 'to the end';
    })();
  }

  private async begin(signal: AbortSignal | undefined): Promise<void> {
    this.calls++;
    const script = this.script;
    if (script === 'fail') throw new ModelCallFailedError('http', 'HTTP 500', 500);
    if (script === 'reject') throw new ModelRequestRejectedError(422, 'Input validation error: prompt too long');
    const waitMs = script === 'hang' ? undefined : script === 'ok' ? 0 : 'slowMs' in script ? script.slowMs : script.failAfterMs;
    await new Promise<void>((resolve, reject) => {
      const timer = waitMs === undefined ? undefined : setTimeout(resolve, waitMs);
      signal?.addEventListener('abort', () => {
        clearTimeout(timer);
        this.aborted++;
        reject(new DOMException('aborted', 'AbortError'));
      });
    });
    if (typeof script === 'object' && 'failAfterMs' in script) throw new ModelCallFailedError('http', 'HTTP 500', 500);
  }
}

const BREAKER_TIMEOUT_MS = 2_000;
let registry: CircuitBreakerRegistry | undefined;
afterEach(() => registry?.onApplicationShutdown());

function targetsOf(...models: string[]): { targets: ModelTarget[]; clients: ScriptedClient[] } {
  registry = new CircuitBreakerRegistry({ ...TEST_BREAKER_CONFIG, timeoutMs: BREAKER_TIMEOUT_MS, failureThreshold: 1 });
  const clients = models.map((model) => new ScriptedClient(model));
  const targets = clients.map((client, i) => {
    const name = i === 0 ? 'huggingface' : `huggingface:${client.model}`;
    registry!.guard(client, name);
    return new ModelTarget(client.model, registry!.get(name), client as unknown as HfTextGenClient, 10, BREAKER_TIMEOUT_MS);
  });
  return { targets, clients };
}

const OPTIONS: FailoverOptions = { deadlineMs: 5_000, hedgeAfterMs: 0 };

function counted(target: ModelTarget) {
  const { successes, failures } = target.breaker.snapshot().stats;
  return { successes, failures, state: target.breaker.state };
}

describe('askTargets', () => {
  it('asks only the first target when it answers', async () => {
    const { targets, clients } = targetsOf('a', 'b');
    const asked = await askTargets(targets, PROMPT, undefined, false, OPTIONS);
    expect(asked).toEqual({ answered: true, model: 'a', text: 'answer from a', passed: [] });
    expect(clients.map((client) => client.calls)).toEqual([1, 0]);
  });

  it('passes over a failing target to the next, which answers; the failure counts on the first breaker only', async () => {
    const { targets, clients } = targetsOf('a', 'b');
    clients[0].script = 'fail';
    const asked = await askTargets(targets, PROMPT, undefined, false, OPTIONS);
    expect(asked).toMatchObject({ answered: true, model: 'b', text: 'answer from b' });
    expect(asked.passed.map(({ model, reason }) => ({ model, reason }))).toEqual([{ model: 'a', reason: 'upstream_error' }]);
    expect(counted(targets[0])).toEqual({ successes: 0, failures: 1, state: 'open' });
    expect(counted(targets[1])).toEqual({ successes: 1, failures: 0, state: 'closed' });
  });

  it('passes over an open circuit without calling it', async () => {
    const { targets, clients } = targetsOf('a', 'b');
    clients[0].script = 'fail';
    await askTargets(targets, PROMPT, undefined, false, OPTIONS);
    const asked = await askTargets(targets, PROMPT, undefined, false, OPTIONS);
    expect(asked.passed.map(({ reason }) => reason)).toEqual(['circuit_open']);
    expect(clients[0].calls).toBe(1);
  });

  it('passes over a request-specific rejection, which does not count on its breaker', async () => {
    const { targets, clients } = targetsOf('a', 'b');
    clients[0].script = 'reject';
    const asked = await askTargets(targets, PROMPT, undefined, false, OPTIONS);
    expect(asked).toMatchObject({ answered: true, model: 'b' });
    expect(asked.passed.map(({ reason }) => reason)).toEqual(['rejected']);
    expect(counted(targets[0])).toEqual({ successes: 0, failures: 0, state: 'closed' });
  });

  it('gives every reason, in order, when no target answers', async () => {
    const { targets, clients } = targetsOf('a', 'b');
    clients[0].script = 'fail';
    clients[1].script = 'reject';
    const asked = await askTargets(targets, PROMPT, undefined, false, OPTIONS);
    expect(asked.answered).toBe(false);
    expect(asked.passed.map(({ model, reason }) => `${model}:${reason}`)).toEqual(['a:upstream_error', 'b:rejected']);
  });

  it('cuts a later call at the deadline when less than its time-out is left: it counts neither way', async () => {
    const { targets, clients } = targetsOf('a', 'b');
    clients[0].script = { failAfterMs: 150 };
    clients[1].script = 'hang';
    // a fails after 150 ms; b then has 150 ms of the 300 ms deadline left, less than its breaker's 2 s time-out ...
    const startedAt = performance.now();
    const asked = await askTargets(targets, PROMPT, undefined, false, { ...OPTIONS, deadlineMs: 300 });
    expect(performance.now() - startedAt).toBeLessThan(1_500);
    // ... so b is cut at the deadline and passed with timeout, counting nothing; a's failure counts.
    expect(asked.answered).toBe(false);
    expect(asked.passed.map(({ model, reason }) => `${model}:${reason}`)).toEqual(['a:upstream_error', 'b:timeout']);
    expect(clients.map((client) => [client.calls, client.aborted])).toEqual([
      [1, 0],
      [1, 1],
    ]);
    expect(counted(targets[0])).toMatchObject({ failures: 1 });
    expect(counted(targets[1])).toEqual({ successes: 0, failures: 0, state: 'closed' });
  });

  it('never cuts the first call: it runs its whole time-out (never longer than the deadline, by config)', async () => {
    const { targets, clients } = targetsOf('a', 'b');
    clients[0].script = { slowMs: 300 };
    const asked = await askTargets(targets, PROMPT, undefined, false, { ...OPTIONS, deadlineMs: 200 });
    expect(asked).toMatchObject({ answered: true, model: 'a' });
    expect(clients[1].calls).toBe(0);
  });

  it("leaves the first call to its breaker's own time-out (a failure) when the deadline is longer", async () => {
    const { targets, clients } = targetsOf('a', 'b');
    clients[0].script = 'hang';
    const asked = await askTargets(targets, PROMPT, undefined, false, { ...OPTIONS, deadlineMs: 5_000 });
    // The breakers time out at 2 s (targetsOf); with 5 s left, no deadline cuts the call before that.
    expect(asked).toMatchObject({ answered: true, model: 'b' });
    expect(asked.passed.map(({ reason }) => reason)).toEqual(['timeout']);
    expect(counted(targets[0])).toMatchObject({ failures: 1 });
  });

  it('hedges a silent target: the next answers, the silent call is aborted and counts neither way', async () => {
    const { targets, clients } = targetsOf('a', 'b');
    clients[0].script = 'hang';
    const asked = await askTargets(targets, PROMPT, undefined, false, { ...OPTIONS, hedgeAfterMs: 100 });
    expect(asked).toMatchObject({ answered: true, model: 'b', text: 'from b to the end' });
    expect(asked.passed.map(({ model, reason }) => `${model}:${reason}`)).toEqual(['a:timeout']);
    expect(clients.map((client) => [client.calls, client.aborted])).toEqual([
      [1, 1],
      [1, 0],
    ]);
    expect(counted(targets[0])).toEqual({ successes: 0, failures: 0, state: 'closed' });
    expect(targets[0].breaker.snapshot().inFlight).toBe(0);
  });

  it('keeps the first answer when it comes before the hedge is due, and asks nobody else', async () => {
    const { targets, clients } = targetsOf('a', 'b');
    clients[0].script = { slowMs: 20 };
    const asked = await askTargets(targets, PROMPT, undefined, true, { ...OPTIONS, hedgeAfterMs: 500 });
    expect(asked).toMatchObject({ answered: true, model: 'a' });
    expect(clients[1].calls).toBe(0);
    if (asked.answered && 'pieces' in asked) await asked.pieces.return?.();
  });

  it('streams: resolves at the first piece of the target that answers, the one before it passed over', async () => {
    const { targets, clients } = targetsOf('a', 'b');
    clients[0].script = 'fail';
    const asked = await askTargets(targets, PROMPT, undefined, true, OPTIONS);
    if (!asked.answered || !('pieces' in asked)) throw new Error('expected a stream');
    const pieces: string[] = [];
    for await (const piece of asked.pieces) pieces.push(piece);
    expect({ model: asked.model, pieces }).toEqual({ model: 'b', pieces: ['from b ', 'to the end'] });
    expect(counted(targets[1])).toMatchObject({ successes: 1 });
  });

  it('rejects with the caller’s reason when the caller leaves, with nothing left running', async () => {
    const { targets, clients } = targetsOf('a', 'b');
    clients[0].script = 'hang';
    clients[1].script = 'hang';
    const caller = new AbortController();
    const asked = askTargets(targets, PROMPT, caller.signal, false, { ...OPTIONS, hedgeAfterMs: 50 });
    await new Promise((resolve) => setTimeout(resolve, 150));
    const gone = new Error('client gone');
    caller.abort(gone);
    await expect(asked).rejects.toBe(gone);
    expect(clients.map((client) => [client.calls, client.aborted])).toEqual([
      [1, 1],
      [1, 1],
    ]);
    expect(targets.map((target) => target.breaker.snapshot().inFlight)).toEqual([0, 0]);
    expect(targets.map((target) => counted(target).failures)).toEqual([0, 0]);
  });
});
