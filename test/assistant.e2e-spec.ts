// POST /assistant/query over real HTTP: the app as main.ts builds it, the fake HF upstream on loopback.
import { setTimeout as sleep } from 'node:timers/promises';
import { format } from 'node:util';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { ConsoleLogger } from '@nestjs/common';
import { TestingModuleBuilder } from '@nestjs/testing';
import { FakeHfUpstream, type Fault } from './support/fake-hf-upstream.js';
import {
  type AnswerBody,
  ask,
  breakerEntry,
  type ErrorBody,
  getHealth,
  headerText,
  type HttpResult,
  postRaw,
  type UnavailableBody,
  waitForBreakerState,
} from './support/http.js';
import { isRequestLine, logEntries } from './support/log-lines.js';
import {
  FAIL_THRESHOLD as THRESHOLD,
  KNOWN_QUESTIONS as KNOWN,
  NONSENSE_QUESTIONS as NONSENSE,
  openCircuit,
  startTestApp,
  type TestApp,
} from './support/test-app.js';

interface Harness {
  readonly url: string;
  readonly upstream: FakeHfUpstream;
}

/**
 * One fake upstream for the describe block, and the app pointed at it: started once for the block, or afresh
 * for each test when the tests must not share a breaker or a cache.
 */
function useApp(env: Record<string, string> = {}, scope: 'suite' | 'test' = 'suite'): Harness {
  let upstream: FakeHfUpstream | undefined;
  let testApp: TestApp | undefined;
  const start = async (): Promise<void> => {
    testApp = await startTestApp({ HF_ENDPOINT_URL: requireValue(upstream).url, ...env });
  };
  const stop = async (): Promise<void> => {
    await testApp?.close();
    testApp = undefined;
  };
  beforeAll(async () => {
    upstream = await FakeHfUpstream.start();
    if (scope === 'suite') await start();
  });
  afterAll(async () => {
    await stop();
    await upstream?.close();
  });
  beforeEach(async () => {
    requireValue(upstream).reset();
    if (scope === 'test') await start();
  });
  if (scope === 'test') afterEach(stop);
  return {
    get url() {
      return requireValue(testApp).url;
    },
    get upstream() {
      return requireValue(upstream);
    },
  };
}

function requireValue<T>(value: T | undefined): T {
  if (value === undefined) throw new Error('the app or upstream is not started');
  return value;
}

/** The text of every chat message the upstream last received. */
function promptSentTo(upstream: FakeHfUpstream): string {
  const request = upstream.lastRequest?.body as { messages?: Array<{ content?: unknown }> } | undefined;
  return (request?.messages ?? []).map((message) => String(message.content)).join('\n');
}

function expectRetryAfterHeaderMatchesBody(result: HttpResult<UnavailableBody>): void {
  const header = result.headers.get('retry-after');
  expect(header).toMatch(/^\d+$/);
  expect(Number(header)).toBe(result.body.retryAfterSeconds);
  expect(result.body.retryAfterSeconds).toBeGreaterThanOrEqual(1);
}

describe('POST /assistant/query while the model answers', () => {
  const h = useApp();

  it('answers from the model with the matching excerpts as context, and says it is healthy', async () => {
    h.upstream.setFault({ kind: 'ok', answer: 'One trial call goes through [1].' });

    const { status, body } = await ask(h.url, { query: KNOWN[0] });

    expect(status).toBe(200);
    expect(body).toMatchObject({
      answer: 'One trial call goes through [1].',
      source: 'llm',
      degraded: false,
      fallbackReason: null,
      circuit: { name: 'huggingface', state: 'closed' },
    });
    expect(body).not.toHaveProperty('retryAfterSeconds');
    expect(body).not.toHaveProperty('cachedAt');
    expect(body.excerpts.length).toBeGreaterThan(0);
    expect(body.excerpts.length).toBeLessThanOrEqual(3);
    for (const excerpt of body.excerpts) {
      expect(Object.keys(excerpt).sort()).toEqual(['documentId', 'score', 'text', 'title']);
      expect(excerpt).toEqual({
        documentId: expect.any(String),
        title: expect.any(String),
        text: expect.any(String),
        score: expect.any(Number),
      });
    }
    const prompt = promptSentTo(h.upstream);
    for (const excerpt of body.excerpts) expect(prompt).toContain(excerpt.text);
    expect(prompt).toContain(KNOWN[0]);
  });

  it('answers the same question again from the cache without calling the model, however it is cased or spaced', async () => {
    const first = await ask(h.url, { query: KNOWN[1] });
    expect(first.body.source).toBe('llm');
    const calls = h.upstream.calls;

    const again = await ask(h.url, { query: `   ${KNOWN[1].toUpperCase().replace(/ /g, ' \t  ')}  ` });

    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({
      answer: first.body.answer,
      source: 'cache',
      degraded: false,
      fallbackReason: null,
      excerpts: first.body.excerpts,
    });
    expect(again.body.cachedAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/);
    expect(new Date(again.body.cachedAt ?? '').toISOString()).toBe(again.body.cachedAt);
    expect(again.body).not.toHaveProperty('retryAfterSeconds');
    expect(h.upstream.calls).toBe(calls);
  });

  it('asks the model again when topK differs, since that changes the answer', async () => {
    await ask(h.url, { query: KNOWN[2], topK: 2 });
    expect((await ask(h.url, { query: KNOWN[2], topK: 2 })).body.source).toBe('cache');
    const calls = h.upstream.calls;

    const wider = await ask(h.url, { query: KNOWN[2], topK: 5 });

    expect(wider.body.source).toBe('llm');
    expect(wider.body.excerpts).toHaveLength(5);
    expect(h.upstream.calls).toBe(calls + 1);
  });
});

describe('POST /assistant/query when the model fails with the circuit still closed', () => {
  const h = useApp({}, 'test');

  it('answers from the excerpts, marked degraded, when the model fails', async () => {
    h.upstream.setFault({ kind: 'error500' });

    const { status, body } = await ask(h.url, { query: KNOWN[0] });

    expect(status).toBe(200);
    expect(body).toMatchObject({
      source: 'excerpts',
      degraded: true,
      fallbackReason: 'upstream_error',
      retryAfterSeconds: 1,
      circuit: { name: 'huggingface', state: 'closed' },
    });
    expect(body.excerpts.length).toBeGreaterThan(0);
    for (const excerpt of body.excerpts) expect(body.answer).toContain(excerpt.text);
  });

  it('answers 503 with Retry-After when nothing is cached and no excerpt matches', async () => {
    h.upstream.setFault({ kind: 'error500' });

    const result = await ask<UnavailableBody>(h.url, { query: NONSENSE[0] });

    expect(result.status).toBe(503);
    expect(result.body).toEqual({
      statusCode: 503,
      error: 'Service Unavailable',
      message: expect.any(String),
      reason: 'upstream_error',
      retryAfterSeconds: 1,
      circuit: { name: 'huggingface', state: 'closed' },
    });
    expect(result.body.message.length).toBeGreaterThan(0);
    expectRetryAfterHeaderMatchesBody(result);
  });

  it('cuts a hung call at the time-out, closes its connection, and answers degraded with reason timeout', async () => {
    h.upstream.setFault({ kind: 'hang' });
    const started = Date.now();

    const { status, body } = await ask(h.url, { query: KNOWN[0] });
    const elapsed = Date.now() - started;

    expect(status).toBe(200);
    expect(body).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'timeout', circuit: { state: 'closed' } });
    // the configured time-out is 0.5 s: never sooner, and nowhere near a hung request
    expect(elapsed).toBeGreaterThanOrEqual(450);
    expect(elapsed).toBeLessThan(5000);
    expect(h.upstream.calls).toBe(1);
    await h.upstream.waitForInFlight(0);
  });

  it('opens the circuit at once for a 429 with Retry-After, for that long, and answers rate_limited', async () => {
    h.upstream.setFault({ kind: 'rateLimited429', retryAfterSeconds: 7 });

    const { status, body } = await ask(h.url, { query: KNOWN[0] });

    expect(status).toBe(200);
    expect(body).toMatchObject({
      source: 'excerpts',
      degraded: true,
      fallbackReason: 'rate_limited',
      retryAfterSeconds: 7,
      circuit: { state: 'open' },
    });
    h.upstream.setFault({ kind: 'ok' });
    expect((await ask(h.url, { query: KNOWN[1] })).body).toMatchObject({ fallbackReason: 'circuit_open', retryAfterSeconds: 7 });
    expect(h.upstream.calls).toBe(1);
  });

  it.each<[string, Fault]>([
    ["a 503 with the Hub's RateLimit header", { kind: 'loading503', estimatedTimeSeconds: 4 }],
    ["a 429 with the Hub's RateLimit header", { kind: 'rateLimited429', ratelimitSeconds: 4 }],
  ])('opens the circuit at once for %s, and answers rate_limited', async (_case, fault) => {
    h.upstream.setFault(fault);
    const { body } = await ask(h.url, { query: KNOWN[0] });
    expect(body).toMatchObject({ fallbackReason: 'rate_limited', retryAfterSeconds: 4, circuit: { state: 'open' } });
  });

  it('never opens the circuit for 400 or 422 rejections of a particular request, however many in a row', async () => {
    h.upstream.setFault({
      kind: 'sequence',
      faults: [
        { kind: 'badRequest' },
        { kind: 'unprocessable' },
        { kind: 'badRequest' },
        { kind: 'unprocessable' },
        { kind: 'badRequest' },
        { kind: 'unprocessable' },
      ],
    });

    for (const query of KNOWN.slice(0, 2 * THRESHOLD)) {
      const { status, body } = await ask(h.url, { query });
      expect(status).toBe(200);
      expect(body).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'upstream_error', circuit: { state: 'closed' } });
    }

    expect(h.upstream.calls).toBe(2 * THRESHOLD);
    expect((await getHealth(h.url, '/circuit-breaker')).status).toBe(200);
  });

  it.each<[string, Fault]>([
    ['a 401 (bad token)', { kind: 'unauthorized' }],
    ['a 402 (credits exhausted)', { kind: 'paymentRequired' }],
    ['a 403 (no permission)', { kind: 'forbidden' }],
    ['an unknown model (400 model_not_supported)', { kind: 'unknownModel' }],
    ["TGI's 422 template error (a model without a chat template)", { kind: 'templateError' }],
    ['a 422 saying HF_MAX_NEW_TOKENS is above the model’s limit', { kind: 'tokenLimit' }],
  ])('opens the circuit at once, without waiting for the threshold, on %s, and the health entry says why', async (_case, fault) => {
    h.upstream.setFault(fault);

    const { status, body } = await ask(h.url, { query: KNOWN[0] });

    expect(status).toBe(200);
    expect(body).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'upstream_error', circuit: { state: 'open' } });
    const health = await getHealth(h.url, '/circuit-breaker');
    expect(health.status).toBe(503);
    expect(health.body.details['huggingface']).toMatchObject({ state: 'open', failures: 1, lastFailure: { kind: 'http' } });
    expect(h.upstream.calls).toBe(1);
  });

  it.each<[string, Fault[]]>([
    ['a 408, a 500 and a 429 with no wait hint', [{ kind: 'requestTimeout' }, { kind: 'error500' }, { kind: 'rateLimited429' }]],
    ['a reset connection, a body that is not JSON and a body cut short', [{ kind: 'reset' }, { kind: 'malformed' }, { kind: 'truncated' }]],
  ])('counts %s as failures that open the circuit at the threshold', async (_case, faults) => {
    h.upstream.setFault({ kind: 'sequence', faults });

    const states: string[] = [];
    for (const query of KNOWN.slice(0, faults.length)) {
      const { status, body } = await ask(h.url, { query });
      expect(status).toBe(200);
      expect(body).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'upstream_error' });
      states.push(body.circuit.state);
    }

    expect(states).toEqual(['closed', 'closed', 'open']);
  });

  it(`opens the circuit after ${THRESHOLD} consecutive failures, and says so in the answer to the last one`, async () => {
    h.upstream.setFault({ kind: 'error500' });

    const answers: AnswerBody[] = [];
    for (const query of KNOWN.slice(0, THRESHOLD)) answers.push((await ask(h.url, { query })).body);

    expect(answers.map((answer) => answer.circuit.state)).toEqual(['closed', 'closed', 'open']);
    expect(answers.every((answer) => answer.fallbackReason === 'upstream_error')).toBe(true);
    expect(h.upstream.calls).toBe(THRESHOLD);
  });
});

describe('POST /assistant/query while the circuit is open', () => {
  // A long reset keeps the circuit open for the whole test; a 1 s fresh TTL lets a cached answer go stale.
  const h = useApp({ CIRCUIT_BREAKER_RESET_TIMEOUT: '30', CACHE_TTL_SECONDS: '1' }, 'test');

  it('answers from the excerpts at once, reason circuit_open, without calling the model', async () => {
    await openCircuit(h.url, h.upstream);
    const calls = h.upstream.calls;
    h.upstream.setFault({ kind: 'ok' });

    for (const query of KNOWN) {
      const { status, body } = await ask(h.url, { query });
      expect(status).toBe(200);
      expect(body).toMatchObject({
        source: 'excerpts',
        degraded: true,
        fallbackReason: 'circuit_open',
        circuit: { name: 'huggingface', state: 'open' },
      });
      expect(body.excerpts.length).toBeGreaterThan(0);
      expect(Number.isInteger(body.retryAfterSeconds)).toBe(true);
      expect(body.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(body.retryAfterSeconds).toBeLessThanOrEqual(30);
    }

    expect(h.upstream.calls).toBe(calls);
  });

  it('answers 503 with Retry-After up to the trial when there is nothing to fall back on', async () => {
    await openCircuit(h.url, h.upstream);
    const calls = h.upstream.calls;

    const result = await ask<UnavailableBody>(h.url, { query: NONSENSE[3] });

    expect(result.status).toBe(503);
    expect(result.body).toEqual({
      statusCode: 503,
      error: 'Service Unavailable',
      message: expect.any(String),
      reason: 'circuit_open',
      retryAfterSeconds: expect.any(Number),
      circuit: { name: 'huggingface', state: 'open' },
    });
    expectRetryAfterHeaderMatchesBody(result);
    expect(result.body.retryAfterSeconds).toBeLessThanOrEqual(30);
    expect(h.upstream.calls).toBe(calls);
  });

  it('serves a fresh cached answer as healthy, then once older than CACHE_TTL_SECONDS the same answer marked stale', async () => {
    const original = await ask(h.url, { query: KNOWN[0] });
    expect(original.body.source).toBe('llm');
    await openCircuit(h.url, h.upstream);
    const calls = h.upstream.calls;

    const fresh = await ask(h.url, { query: KNOWN[0] });
    await sleep(1100); // just past CACHE_TTL_SECONDS=1: the entry is now stale
    const stale = await ask(h.url, { query: KNOWN[0] });

    expect(fresh.body).toMatchObject({ answer: original.body.answer, source: 'cache', degraded: false, fallbackReason: null });
    expect(fresh.body).not.toHaveProperty('retryAfterSeconds');
    expect(stale.status).toBe(200);
    expect(stale.body).toMatchObject({
      answer: original.body.answer,
      source: 'cache',
      degraded: true,
      fallbackReason: 'circuit_open',
      cachedAt: fresh.body.cachedAt,
      excerpts: original.body.excerpts,
      circuit: { state: 'open' },
    });
    expect(stale.body.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(h.upstream.calls).toBe(calls);
  });
});

describe('POST /assistant/query recovering through half-open', () => {
  // A 2 s time-out lets the trial be slow (1 s) without timing out: requests during it must not wait for it.
  const h = useApp({ CIRCUIT_BREAKER_RESET_TIMEOUT: '0.5', CIRCUIT_BREAKER_TIMEOUT_SECONDS: '2' }, 'test');

  it('lets exactly one trial call through after the reset time-out, and closes the circuit when it succeeds', async () => {
    await openCircuit(h.url, h.upstream);
    h.upstream.setFault({ kind: 'ok' });
    await waitForBreakerState(h.url, 'huggingface', 'half_open');
    const calls = h.upstream.calls;

    const trial = await ask(h.url, { query: KNOWN[0] });
    const after = await ask(h.url, { query: KNOWN[1] });

    expect(trial.body).toMatchObject({ source: 'llm', degraded: false, fallbackReason: null, circuit: { state: 'closed' } });
    expect(after.body).toMatchObject({ source: 'llm', degraded: false, circuit: { state: 'closed' } });
    expect(h.upstream.calls).toBe(calls + 2);
  });

  it('opens the circuit again for another reset period when the trial call fails', async () => {
    await openCircuit(h.url, h.upstream);
    await waitForBreakerState(h.url, 'huggingface', 'half_open');
    const calls = h.upstream.calls;

    const trial = await ask(h.url, { query: KNOWN[0] });

    expect(trial.body).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'upstream_error', circuit: { state: 'open' } });
    expect(trial.body.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(h.upstream.calls).toBe(calls + 1);

    h.upstream.setFault({ kind: 'ok' });
    await waitForBreakerState(h.url, 'huggingface', 'half_open');
    expect((await ask(h.url, { query: KNOWN[1] })).body).toMatchObject({ source: 'llm', circuit: { state: 'closed' } });
  });

  it('answers requests that arrive during the trial at once from the fallbacks, sending only the trial to the model', async () => {
    await openCircuit(h.url, h.upstream);
    h.upstream.setFault({ kind: 'ok', latencyMs: 1000 });
    await waitForBreakerState(h.url, 'huggingface', 'half_open');
    const calls = h.upstream.calls;

    let trialSettled = false;
    const trial = ask(h.url, { query: KNOWN[0] }).finally(() => {
      trialSettled = true;
    });
    await h.upstream.waitForCalls(calls + 1);
    const during = await Promise.all(KNOWN.slice(1, 5).map((query) => ask(h.url, { query })));
    const answeredBeforeTrial = !trialSettled;

    expect(answeredBeforeTrial).toBe(true);
    for (const { status, body } of during) {
      expect(status).toBe(200);
      expect(body).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'circuit_open', circuit: { state: 'half_open' } });
      expect(body.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    }
    expect((await trial).body).toMatchObject({ source: 'llm', circuit: { state: 'closed' } });
    expect(h.upstream.calls).toBe(calls + 1);
  });
});

describe('POST /assistant/query with the circuit breaker disabled', () => {
  const h = useApp({ CIRCUIT_BREAKER_ENABLED: 'false' }, 'test');

  it('calls the model for every request and never opens the circuit, however many failures', async () => {
    h.upstream.setFault({ kind: 'error500' });

    for (const query of KNOWN.slice(0, 2 * THRESHOLD)) {
      const { status, body } = await ask(h.url, { query });
      expect(status).toBe(200);
      expect(body).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'upstream_error', circuit: { state: 'closed' } });
    }

    expect(h.upstream.calls).toBe(2 * THRESHOLD);
    const health = await getHealth(h.url, '/circuit-breaker');
    expect(health.status).toBe(200);
    // the failures are still counted for dashboards
    expect(breakerEntry(health.body, 'huggingface')).toMatchObject({ state: 'closed', stats: { failures: 2 * THRESHOLD, rejects: 0 } });
  });

  it('still cuts a hung call at the time-out and closes its connection', async () => {
    h.upstream.setFault({ kind: 'hang' });
    const started = Date.now();

    const { body } = await ask(h.url, { query: KNOWN[0] });

    expect(body).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'timeout' });
    expect(Date.now() - started).toBeLessThan(5000);
    await h.upstream.waitForInFlight(0);
  });
});

describe('POST /assistant/query with no model configured', () => {
  let testApp: TestApp;
  beforeAll(async () => {
    testApp = await startTestApp({ HF_TOKEN: '', HF_ENDPOINT_URL: '' });
  });
  afterAll(() => testApp.close());

  it('answers from the excerpts, reason upstream_unconfigured, and never opens the circuit', async () => {
    for (const query of KNOWN.slice(0, THRESHOLD + 1)) {
      const { status, body } = await ask(testApp.url, { query });
      expect(status).toBe(200);
      expect(body).toMatchObject({
        source: 'excerpts',
        degraded: true,
        fallbackReason: 'upstream_unconfigured',
        retryAfterSeconds: 1,
        circuit: { state: 'closed' },
      });
    }
  });

  it('answers 503 with Retry-After, reason upstream_unconfigured, when no excerpt matches', async () => {
    const result = await ask<UnavailableBody>(testApp.url, { query: NONSENSE[0] });

    expect(result.status).toBe(503);
    expect(result.body).toMatchObject({ statusCode: 503, reason: 'upstream_unconfigured', circuit: { state: 'closed' } });
    expectRetryAfterHeaderMatchesBody(result);
  });
});

describe('the HF token', () => {
  const SECRET = 'hf_e2e_SECRET_should_never_leak';
  const ALL_LEVELS = ['verbose', 'debug', 'log', 'warn', 'error', 'fatal'] as const;
  const written: string[] = [];
  const responses: Array<HttpResult<unknown>> = [];
  let upstream: FakeHfUpstream;
  let testApp: TestApp | undefined;

  function record(chunk: string | Uint8Array): boolean {
    written.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  }

  beforeAll(async () => {
    // Everything the process writes while the app lives, at every log level (the testing logger keeps only errors).
    jest.spyOn(process.stdout, 'write').mockImplementation(record);
    jest.spyOn(process.stderr, 'write').mockImplementation(record);
    // jest's console buffers until the file ends, past this capture: record what a library prints through it too
    for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
      jest.spyOn(console, method).mockImplementation((...args: unknown[]) => void record(`${format(...args)}\n`));
    }
    const compile = TestingModuleBuilder.prototype.compile;
    const everyLevel = jest.spyOn(TestingModuleBuilder.prototype, 'compile').mockImplementation(function (
      this: TestingModuleBuilder,
      ...args
    ) {
      return compile.apply(this.setLogger(new ConsoleLogger({ logLevels: [...ALL_LEVELS], colors: false, depth: null })), args);
    });
    upstream = await FakeHfUpstream.start();
    try {
      // and pino, which the app logs through once built, at its most verbose level
      testApp = await startTestApp({ HF_TOKEN: SECRET, HF_ENDPOINT_URL: upstream.url, LOG_LEVEL: 'trace' });
    } finally {
      everyLevel.mockRestore();
    }
  });
  afterAll(async () => {
    await testApp?.close();
    await upstream.close();
    jest.restoreAllMocks();
  });

  async function keep<T>(result: Promise<HttpResult<T>>): Promise<HttpResult<T>> {
    const awaited = await result;
    responses.push(awaited);
    return awaited;
  }

  it('reaches the model as Authorization: Bearer <token>', async () => {
    const { body } = await keep(ask(requireValue(testApp).url, { query: KNOWN[0] }));

    expect(body.source).toBe('llm');
    expect(upstream.lastRequest?.headers.authorization).toBe(`Bearer ${SECRET}`);
  });

  it('appears in no response body or header of any route, on the happy path or an error path', async () => {
    const { url } = requireValue(testApp);
    await keep(ask(url, { query: KNOWN[0] }));
    for (const path of ['', '/live', '/ready', '/circuit-breaker'] as const) await keep(getHealth(url, path));
    await keep(postRaw(url, '{"query": ', 'application/json'));
    await keep(postRaw(url, 'query=x', 'text/plain'));
    await keep(ask(url, { query: '' }));
    await keep(ask(url, { query: KNOWN[1], topK: 0 }));
    await keep(ask(url, { query: 'x'.repeat(100 * 1024) }));
    // one call each (THRESHOLD in all): a degraded answer, a 503, and the failure that opens the circuit
    const callsBefore = upstream.calls;
    const errorPaths: Array<[Fault, string]> = [
      [{ kind: 'reset' }, NONSENSE[0]],
      [{ kind: 'malformed' }, KNOWN[3]],
      [{ kind: 'unauthorized' }, KNOWN[2]],
    ];
    for (const [fault, query] of errorPaths) {
      upstream.setFault(fault);
      await keep(ask(url, { query }));
    }
    expect(upstream.calls).toBe(callsBefore + errorPaths.length);
    // the circuit is open now: its degraded answers and 503s too
    await keep(ask(url, { query: KNOWN[7] }));
    await keep(ask(url, { query: NONSENSE[1] }));
    for (const path of ['', '/live', '/ready', '/circuit-breaker'] as const) await keep(getHealth(url, path));

    expect(responses.map((r) => r.status)).toEqual(expect.arrayContaining([200, 400, 413, 415, 503]));
    expect((await getHealth(url, '/circuit-breaker')).status).toBe(503);
    const leaks = responses.filter((r) => `${headerText(r.headers)}\n${r.text}`.includes(SECRET)).map((r) => `${r.status} ${r.text}`);
    expect(leaks).toEqual([]);
  });

  it('appears in no log line from start-up to shutdown', async () => {
    await requireValue(testApp).close();
    testApp = undefined;
    const logs = written.join('');

    // the capture works: start-up, the breaker opening on the error paths of the test before, and pino's line for
    // every request of that test (pino writes through process.stdout, so the spies see it) are in it
    expect(logs).toContain('Generating with');
    expect(logs).toContain('circuit_breaker_transition');
    const requestIds = new Set(
      logEntries(logs)
        .filter(isRequestLine)
        .map((entry) => entry.reqId),
    );
    const unlogged = responses.map((r) => r.headers.get('x-request-id')).filter((id) => id === null || !requestIds.has(id));
    expect(responses.length).toBeGreaterThan(0);
    expect(unlogged).toEqual([]);
    expect(logs.split('\n').filter((line) => line.includes('SECRET_should_never_leak'))).toEqual([]);
  });
});

describe('POST /assistant/query with bad input', () => {
  const MAX = 500;
  const h = useApp({ ASSISTANT_MAX_QUERY_LENGTH: String(MAX) });

  /** Every rejection is a JSON body naming the problem; and the app answers the next good question. */
  async function expectRejected(result: HttpResult<ErrorBody>, status: number, says: RegExp): Promise<void> {
    expect(result.status).toBe(status);
    expect(result.headers.get('content-type')).toMatch(/^application\/json/);
    expect(result.body.statusCode).toBe(status);
    expect([result.body.message].flat().join('; ')).toMatch(says);
    const next = await ask(h.url, { query: KNOWN[0] });
    expect(next.status).toBe(200);
  }

  it.each<[string, unknown, RegExp]>([
    ['a missing query', { topK: 2 }, /query/],
    ['an empty query', { query: '' }, /query must not be empty/],
    ['a whitespace-only query', { query: '   ' }, /query must not be empty/],
    ['a number as the query', { query: 123 }, /query must be a string/],
    ['null as the query', { query: null }, /query must be a string/],
    ['an array as the query', { query: ['a'] }, /query must be a string/],
    [
      `a query of ${MAX + 1} characters`,
      { query: 'a'.repeat(MAX + 1) },
      new RegExp(`query must be shorter than or equal to ${MAX} characters`),
    ],
    ['topK 0', { query: KNOWN[0], topK: 0 }, /topK must not be less than 1/],
    ['topK 21', { query: KNOWN[0], topK: 21 }, /topK must not be greater than 20/],
    ['topK 2.5', { query: KNOWN[0], topK: 2.5 }, /topK must be an integer/],
    ['topK "3" (a string)', { query: KNOWN[0], topK: '3' }, /topK must be an integer/],
    ['an unknown field', { query: KNOWN[0], topk: 3 }, /property topk should not exist/],
    ['a JSON array as the body', [{ query: KNOWN[0] }], /query/],
    ['a bare JSON string as the body', KNOWN[0], /query/],
  ])('rejects %s with 400 and says what is wrong', async (_case, body, says) => {
    await expectRejected(await ask<ErrorBody>(h.url, body), 400, says);
  });

  it('rejects topK null with 400 rather than answering with no excerpts at all', async () => {
    const result = await ask<ErrorBody & Partial<AnswerBody>>(h.url, { query: KNOWN[4], topK: null });

    // what a client got instead: a 200 whose prompt and excerpts were empty (slice(0, null))
    expect({ status: result.status, excerpts: result.body.excerpts?.length }).toEqual({ status: 400, excerpts: undefined });
    await expectRejected(result, 400, /topK/);
  });

  it('rejects a body that is not JSON though it says application/json with 400', async () => {
    await expectRejected(await postRaw(h.url, '{"query": "what', 'application/json'), 400, /JSON/);
  });

  it('rejects an empty body that says application/json with 400', async () => {
    await expectRejected(await postRaw(h.url, '', 'application/json'), 400, /empty/i);
  });

  it.each([['text/plain'], ['application/x-www-form-urlencoded']])('rejects a %s body with 415', async (contentType) => {
    await expectRejected(await postRaw(h.url, 'query=What+does+half-open+mean', contentType), 415, /Unsupported Media Type/);
  });

  it('rejects a body over the limit (100 KB) with 413', async () => {
    await expectRejected(await ask<ErrorBody>(h.url, { query: 'a'.repeat(100 * 1024) }), 413, /too large/i);
  });

  it(`accepts a query of exactly ASSISTANT_MAX_QUERY_LENGTH (${MAX}) characters`, async () => {
    const { status, body } = await ask(h.url, { query: `${KNOWN[0]} `.repeat(MAX).slice(0, MAX) });

    expect(status).toBe(200);
    expect(body.source).toBe('llm');
  });

  it('never lets bad input reach the model', async () => {
    const calls = h.upstream.calls;
    await ask(h.url, { query: '' });
    await ask(h.url, { query: KNOWN[0], topK: 0 });
    await postRaw(h.url, 'query=x', 'text/plain');

    expect(h.upstream.calls).toBe(calls);
  });
});
