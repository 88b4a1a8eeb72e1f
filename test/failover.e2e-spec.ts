// Failover across model targets (HF_MODEL, then HF_FALLBACK_MODELS in order), over real HTTP: the app as main.ts
// builds it, one fake upstream serving several models behind HF_ENDPOINT_URL (each with its own faults) and a second
// one standing for a target's dedicated endpoint (`<model>@<base URL>`). JSON, server-sent events and /v1 alike.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import type { ChatCompletion, ChatCompletionChunk } from 'openai/resources/chat/completions';
import { type AppProcess, killAppProcesses, spawnApp } from './support/app-process.js';
import { FakeHfUpstream, type Fault } from './support/fake-hf-upstream.js';
import { ask, breakerEntry, type BreakerEntry, eventually, type Excerpt, getHealth, type HealthBody, withinMs } from './support/http.js';
import { FAIL_THRESHOLD, KNOWN_QUESTIONS, NONSENSE_QUESTIONS, startTestApp, type TestApp } from './support/test-app.js';

/** HF_MODEL: the first target, guarded by the breaker CIRCUIT_BREAKER_NAME. */
const A = 'test-org/model-a';
/** The first entry of HF_FALLBACK_MODELS. */
const B = 'test-org/model-b';
/** A second entry, where a test needs three targets. */
const C = 'test-org/model-c';
const BREAKER_A = 'huggingface';
const BREAKER_B = `huggingface:${B}`;
const ANSWER_B = 'B says: one trial call goes through while the circuit is half-open [1].';
/** Bounds for a loaded 2-core machine: seconds, not milliseconds. */
const HTTP_TIMEOUT_MS = 10_000;
const EXIT_DEADLINE_MS = 10_000;

interface FailoverEntry {
  model: string;
  reason: string;
}

/** The answer body as the contract has it once targets fail over. */
interface Answer {
  answer: string;
  source: 'llm' | 'cache' | 'excerpts';
  degraded: boolean;
  fallbackReason: string | null;
  excerpts: Excerpt[];
  circuit: { name: string; state: string };
  model?: string;
  failover?: FailoverEntry[];
  cachedAt?: string;
  retryAfterSeconds?: number;
}

interface Unavailable {
  statusCode: 503;
  reason: string;
  retryAfterSeconds: number;
  circuit: { name: string; state: string };
}

/** Serves HF_MODEL and every entry without a URL of its own (HF_ENDPOINT_URL); faults are set per model. */
let upstream: FakeHfUpstream;
/** A dedicated endpoint, for an entry `<model>@<url>`. */
let own: FakeHfUpstream;
let testApp: TestApp | undefined;
let questionNumber = 0;

beforeAll(async () => {
  [upstream, own] = await Promise.all([FakeHfUpstream.start(), FakeHfUpstream.start()]);
});

beforeEach(() => {
  upstream.reset();
  own.reset();
});

afterEach(async () => {
  await testApp?.close();
  testApp = undefined;
});

afterAll(async () => {
  await killAppProcesses();
  await Promise.all([upstream?.close(), own?.close()]);
});

/** A fresh app (its own breakers, cache and metrics) with A then B as targets, unless `env` says otherwise. */
async function start(env: Record<string, string> = {}): Promise<string> {
  testApp = await startTestApp({ HF_ENDPOINT_URL: upstream.url, HF_MODEL: A, HF_FALLBACK_MODELS: B, ...env });
  return testApp.url;
}

/** A question with excerpts that no earlier request asked: no cache hit, no call to share. */
function freshQuestion(): string {
  questionNumber += 1;
  return `${KNOWN_QUESTIONS[questionNumber % KNOWN_QUESTIONS.length]} (failover question ${questionNumber})`;
}

async function timed<T>(work: Promise<T>): Promise<{ result: T; ms: number }> {
  const started = performance.now();
  const result = await work;
  return { result, ms: performance.now() - started };
}

/** The text of every chat message of the last request the fake received. */
function promptSent(fake: FakeHfUpstream): string {
  const request = fake.lastRequest?.body as { messages?: Array<{ content?: unknown }> } | undefined;
  return (request?.messages ?? []).map((message) => String(message.content)).join('\n');
}

async function breakers(url: string): Promise<HealthBody> {
  return (await getHealth(url, '/circuit-breaker')).body;
}

async function breaker(url: string, name: string): Promise<BreakerEntry> {
  const entry = breakerEntry(await breakers(url), name);
  if (!entry) throw new Error(`no health entry for breaker ${name}: ${JSON.stringify(await breakers(url))}`);
  return entry;
}

/** What a breaker has counted: a call that counts neither way leaves all of it as it was. */
function counted(entry: BreakerEntry): object {
  return { failures: entry.failures, successes: entry.stats.successes, failed: entry.stats.failures, timeouts: entry.stats.timeouts };
}

// ---- server-sent events ----

interface SseEvent {
  event: string;
  data: string;
}

interface Streamed {
  status: number;
  events: SseEvent[];
}

function parseEvents(text: string): SseEvent[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim() !== '' && !block.startsWith(':'))
    .map((block) => {
      const lines = block.split('\n');
      const field = (name: string) =>
        lines
          .filter((line) => line.startsWith(`${name}: `))
          .map((line) => line.slice(name.length + 2))
          .join('\n');
      return { event: field('event'), data: field('data') };
    });
}

async function stream(url: string, query: string): Promise<Streamed> {
  const response = await fetch(`${url}/assistant/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query }),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  const text = await response.text();
  return {
    status: response.status,
    events: response.headers.get('content-type')?.startsWith('text/event-stream') ? parseEvents(text) : [],
  };
}

const names = (result: Streamed) => result.events.map((event) => event.event);
const tokens = (result: Streamed) =>
  result.events.filter((event) => event.event === 'token').map((event) => (JSON.parse(event.data) as { text: string }).text);

function done(result: Streamed): Answer {
  const last = result.events.at(-1);
  expect(last?.event).toBe('done');
  return JSON.parse(last?.data ?? '{}') as Answer;
}

// ---- metrics ----

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

async function scrape(url: string): Promise<Sample[]> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const label of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[label[1]] = label[2];
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/** The sum over the series of `name` whose labels include `labels`; undefined when there is no such series. */
function valueOf(samples: Sample[], name: string, labels: Record<string, string>): number | undefined {
  const matching = samples.filter(
    (sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  );
  return matching.length === 0 ? undefined : matching.reduce((sum, sample) => sum + sample.value, 0);
}

describe('JSON: when the first target fails, the next one answers', () => {
  it('asks only HF_MODEL while it answers; once it answers 500 the next target answers, not degraded, naming itself and the target passed over', async () => {
    const url = await start();
    const healthy = await ask<Answer>(url, { query: freshQuestion() });
    expect(healthy.body).toMatchObject({ source: 'llm', degraded: false, model: A, circuit: { name: BREAKER_A, state: 'closed' } });
    expect(healthy.body).not.toHaveProperty('failover');
    expect(upstream.callsFor(B)).toBe(0);

    upstream.setFault({ kind: 'error500' }, { model: A });
    upstream.setFault({ kind: 'ok', answer: ANSWER_B }, { model: B });
    const question = freshQuestion();
    const { status, body } = await ask<Answer>(url, { query: question });

    expect(status).toBe(200);
    expect(body).toMatchObject({
      answer: ANSWER_B,
      source: 'llm',
      degraded: false,
      fallbackReason: null,
      model: B,
      failover: [{ model: A, reason: 'upstream_error' }],
      circuit: { name: BREAKER_A, state: 'closed' },
    });
    expect(body.failover).toEqual([{ model: A, reason: 'upstream_error' }]);
    expect(body).not.toHaveProperty('retryAfterSeconds');
    expect([upstream.callsFor(A), upstream.callsFor(B)]).toEqual([2, 1]);
    // B got the same prompt: the question and the excerpts the answer returns.
    expect(upstream.lastRequest?.body).toMatchObject({ model: B });
    expect(promptSent(upstream)).toContain(question);
    for (const excerpt of body.excerpts) expect(promptSent(upstream)).toContain(excerpt.text);
  });

  it.each<[string, string, Fault]>([
    ['a reset connection', 'upstream_error', { kind: 'reset' }],
    ['a body that is not JSON', 'upstream_error', { kind: 'malformed' }],
    ['a 401 (bad token)', 'upstream_error', { kind: 'unauthorized' }],
    ['an unknown model (400 model_not_supported)', 'upstream_error', { kind: 'unknownModel' }],
    ['a 429 with Retry-After', 'rate_limited', { kind: 'rateLimited429', retryAfterSeconds: 20 }],
    ['a hang past its breaker time-out', 'timeout', { kind: 'hang' }],
    ['a 400 about this prompt (TGI validation error)', 'rejected', { kind: 'badRequest' }],
    ['a 422 about this request (TGI validation error)', 'rejected', { kind: 'unprocessable' }],
    ['a 413 (payload too large)', 'rejected', { kind: 'payloadTooLarge' }],
  ])('passes over a first target answering with %s: reason %s', async (_case, reason, fault) => {
    const url = await start();
    upstream.setFault(fault, { model: A });
    upstream.setFault({ kind: 'ok', answer: ANSWER_B }, { model: B });

    const { status, body } = await ask<Answer>(url, { query: freshQuestion() });

    expect(status).toBe(200);
    expect(body).toMatchObject({ answer: ANSWER_B, source: 'llm', degraded: false, model: B, circuit: { name: BREAKER_A } });
    expect(body.failover).toEqual([{ model: A, reason }]);
    expect([upstream.callsFor(A), upstream.callsFor(B)]).toEqual([1, 1]);
  });

  it("lets the next target take a prompt the first rejects, without counting the rejections on the first target's breaker", async () => {
    const url = await start();
    upstream.setFault({ kind: 'badRequest' }, { model: A });

    for (let i = 0; i <= FAIL_THRESHOLD; i += 1) {
      const { body } = await ask<Answer>(url, { query: freshQuestion() });
      expect(body).toMatchObject({ source: 'llm', degraded: false, model: B, failover: [{ model: A, reason: 'rejected' }] });
      expect(body.circuit).toEqual({ name: BREAKER_A, state: 'closed' });
    }

    expect(await breaker(url, BREAKER_A)).toMatchObject({ state: 'closed', failures: 0 });
    expect(upstream.callsFor(A)).toBe(FAIL_THRESHOLD + 1);
    expect((await getHealth(url, '/circuit-breaker')).status).toBe(200);
  });

  it('skips a first target whose circuit is open without calling it: reason circuit_open, the circuit shown open, the answer not degraded', async () => {
    const url = await start({ CIRCUIT_BREAKER_RESET_TIMEOUT: '30' });
    upstream.setFault({ kind: 'error500' }, { model: A });
    for (let i = 0; i < FAIL_THRESHOLD; i += 1) {
      const { body } = await ask<Answer>(url, { query: freshQuestion() });
      expect(body).toMatchObject({ model: B, failover: [{ model: A, reason: 'upstream_error' }] });
    }
    expect(await breaker(url, BREAKER_A)).toMatchObject({ state: 'open', failures: FAIL_THRESHOLD });
    const callsToA = upstream.callsFor(A);

    const { status, body } = await ask<Answer>(url, { query: freshQuestion() });

    expect(status).toBe(200);
    expect(body).toMatchObject({
      source: 'llm',
      degraded: false,
      fallbackReason: null,
      model: B,
      circuit: { name: BREAKER_A, state: 'open' },
    });
    expect(body.failover).toEqual([{ model: A, reason: 'circuit_open' }]);
    expect(body).not.toHaveProperty('retryAfterSeconds');
    expect(upstream.callsFor(A)).toBe(callsToA);
    expect(await breaker(url, BREAKER_B)).toMatchObject({ state: 'closed', failures: 0 });
  });

  it('skips a first target whose bulkhead is full: reason overloaded, no second call to it', async () => {
    const url = await start({ CIRCUIT_BREAKER_MAX_CONCURRENT: '1', CIRCUIT_BREAKER_TIMEOUT_SECONDS: '2' });
    upstream.setFault({ kind: 'hang' }, { model: A });
    const first = ask<Answer>(url, { query: freshQuestion() });
    await upstream.waitForCallsFor(A, 1);

    const second = await ask<Answer>(url, { query: freshQuestion() });
    const callsToA = upstream.callsFor(A);
    const firstAnswer = await first; // awaited before any assertion: no request outlives the test

    expect(second.body).toMatchObject({ source: 'llm', degraded: false, model: B });
    expect(second.body.failover).toEqual([{ model: A, reason: 'overloaded' }]);
    expect(callsToA).toBe(1);
    expect(firstAnswer.body).toMatchObject({ model: B, failover: [{ model: A, reason: 'timeout' }] });
  });

  it('lists every target passed over, in order, one entry each', async () => {
    const url = await start({ HF_FALLBACK_MODELS: `${B},${C}` });
    upstream.setFault({ kind: 'error500' }, { model: A });
    upstream.setFault({ kind: 'badRequest' }, { model: B });
    upstream.setFault({ kind: 'ok', answer: 'C answers.' }, { model: C });

    const { body } = await ask<Answer>(url, { query: freshQuestion() });

    expect(body).toMatchObject({ answer: 'C answers.', source: 'llm', degraded: false, model: C });
    expect(body.failover).toEqual([
      { model: A, reason: 'upstream_error' },
      { model: B, reason: 'rejected' },
    ]);
    expect([upstream.callsFor(A), upstream.callsFor(B), upstream.callsFor(C)]).toEqual([1, 1, 1]);
  });

  it('caches the answer of the target that wrote it: asked again, it comes from the cache naming that model, with no failover', async () => {
    const url = await start();
    upstream.setFault({ kind: 'error500' }, { model: A });
    upstream.setFault({ kind: 'ok', answer: ANSWER_B }, { model: B });
    const question = freshQuestion();
    expect((await ask<Answer>(url, { query: question })).body.model).toBe(B);

    const again = await ask<Answer>(url, { query: question });

    expect(again.body).toMatchObject({ answer: ANSWER_B, source: 'cache', degraded: false, model: B });
    expect(again.body).not.toHaveProperty('failover');
    expect([upstream.callsFor(A), upstream.callsFor(B)]).toEqual([1, 1]);
  });

  it('sends an entry `<model>@<url>` to its own endpoint and names it everywhere without the URL', async () => {
    const url = await start({ HF_FALLBACK_MODELS: `${B}@${own.url}` });
    upstream.setFault({ kind: 'error500' }, { model: A });
    own.setFault({ kind: 'ok', answer: ANSWER_B });

    const result = await ask<Answer>(url, { query: freshQuestion() });

    expect(result.body).toMatchObject({ answer: ANSWER_B, source: 'llm', model: B, failover: [{ model: A, reason: 'upstream_error' }] });
    expect([own.callsFor(B), upstream.callsFor(B)]).toEqual([1, 0]);
    const health = await getHealth(url, '/circuit-breaker');
    expect(Object.keys(health.body.details).sort()).toEqual([BREAKER_A, BREAKER_B]);
    for (const text of [result.text, health.text]) expect(text).not.toContain(own.url);
  });
});

describe('JSON: ASSISTANT_DEADLINE_SECONDS bounds the model calls of one request', () => {
  it('leaves the next target time to answer when the first hangs past its own breaker time-out', async () => {
    const url = await start({ CIRCUIT_BREAKER_TIMEOUT_SECONDS: '0.5', ASSISTANT_DEADLINE_SECONDS: '5' });
    upstream.setFault({ kind: 'hang' }, { model: A });
    upstream.setFault({ kind: 'ok', answer: ANSWER_B }, { model: B });

    const { result, ms } = await timed(ask<Answer>(url, { query: freshQuestion() }));

    expect(result.body).toMatchObject({ answer: ANSWER_B, source: 'llm', degraded: false, model: B });
    expect(result.body.failover).toEqual([{ model: A, reason: 'timeout' }]);
    expect(ms).toBeLessThan(4000);
    await upstream.waitForAbortedByClient(1, { model: A }); // the timed-out call's socket was closed
    expect((await breaker(url, BREAKER_A)).failures).toBe(1); // its own time-out is a failure
  });

  it("answers from the fallbacks when the deadline is shorter than the breaker time-out: the first call's time-out is the deadline (and counts), nothing is left for the next", async () => {
    const url = await start({ CIRCUIT_BREAKER_TIMEOUT_SECONDS: '5', ASSISTANT_DEADLINE_SECONDS: '1' });
    upstream.setFault({ kind: 'hang' }, { model: A });
    upstream.setFault({ kind: 'hang' }, { model: B });

    const { result, ms } = await timed(ask<Answer>(url, { query: freshQuestion() }));

    expect(ms).toBeLessThan(4000);
    expect(result.status).toBe(200);
    expect(result.body).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'timeout', circuit: { name: BREAKER_A } });
    expect(result.body).not.toHaveProperty('failover');
    await upstream.waitForAbortedByClient(1, { model: A });
    // A had the whole deadline, its breaker's time-out (min of the two): a time-out like any other, it counts.
    expect(counted(await breaker(url, BREAKER_A))).toEqual({ failures: 1, successes: 0, failed: 1, timeouts: 1 });
    // B had nothing left: passed over without a call, nothing counted.
    expect(counted(await breaker(url, BREAKER_B))).toEqual({ failures: 0, successes: 0, failed: 0, timeouts: 0 });
    expect(upstream.callsFor(B)).toBe(0);
    await upstream.waitForInFlight(0); // no call left hanging
  });
});

describe('JSON: when every target is passed over, the fallbacks answer as before', () => {
  it("serves a stale cached answer with the first target's reason and the model that wrote it, and no failover", async () => {
    const url = await start({ CACHE_TTL_SECONDS: '1' });
    const question = freshQuestion();
    const original = await ask<Answer>(url, { query: question });
    expect(original.body).toMatchObject({ source: 'llm', model: A });
    upstream.setFault({ kind: 'error500' }, { model: A });
    upstream.setFault({ kind: 'hang' }, { model: B }); // B's own reason would be timeout

    const stale = await eventually(
      () => ask<Answer>(url, { query: question }),
      (result) => result.body.degraded === true,
    );

    expect(stale.body).toMatchObject({
      answer: original.body.answer,
      source: 'cache',
      degraded: true,
      fallbackReason: 'upstream_error',
      model: A,
      circuit: { name: BREAKER_A },
    });
    expect(stale.body).not.toHaveProperty('failover');
    expect(stale.body.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect([upstream.callsFor(A), upstream.callsFor(B)]).toEqual([2, 1]);
  });

  it("answers from the excerpts with the first target's reason, after asking every target, and no failover", async () => {
    const url = await start();
    upstream.setFault({ kind: 'hang' }, { model: A }); // A's reason: timeout
    upstream.setFault({ kind: 'error500' }, { model: B });

    const { status, body } = await ask<Answer>(url, { query: freshQuestion() });

    expect(status).toBe(200);
    expect(body).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'timeout', circuit: { name: BREAKER_A } });
    expect(body).not.toHaveProperty('failover');
    expect(body.excerpts.length).toBeGreaterThan(0);
    expect([upstream.callsFor(A), upstream.callsFor(B)]).toEqual([1, 1]);
  });

  it('answers 503 with Retry-After the soonest any target may be tried again, and no failover', async () => {
    const url = await start();
    upstream.setFault({ kind: 'rateLimited429', retryAfterSeconds: 120 }, { model: A });
    upstream.setFault({ kind: 'rateLimited429', retryAfterSeconds: 3 }, { model: B });

    const first = await ask<Unavailable>(url, { query: NONSENSE_QUESTIONS[0] });
    const again = await ask<Unavailable>(url, { query: NONSENSE_QUESTIONS[1] });

    expect([upstream.callsFor(A), upstream.callsFor(B)]).toEqual([1, 1]);
    expect(first.body).toMatchObject({ statusCode: 503, reason: 'rate_limited', circuit: { name: BREAKER_A, state: 'open' } });
    expect(again.body).toMatchObject({ statusCode: 503, reason: 'circuit_open', circuit: { name: BREAKER_A, state: 'open' } });
    for (const result of [first, again]) {
      expect(result.status).toBe(503);
      expect(result.body).not.toHaveProperty('failover');
      expect(result.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(Number(result.headers.get('retry-after'))).toBe(result.body.retryAfterSeconds);
      expect(result.body.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(result.body.retryAfterSeconds).toBeLessThanOrEqual(3);
    }
    // A alone would have said two minutes: its circuit is open that long.
    const nextTrialOfA = Date.parse((await breaker(url, BREAKER_A)).nextAttemptAt ?? '');
    expect(nextTrialOfA - Date.now()).toBeGreaterThan(100_000);
  });
});

describe('streaming: Accept text/event-stream', () => {
  it.each<[string, string, Fault]>([
    ['fails before its first token', 'upstream_error', { kind: 'error500' }],
    ['stalls before its first token past its breaker time-out', 'timeout', { kind: 'stallBeforeFirstToken' }],
  ])(
    "a first target that %s passes the stream on (reason %s): the next one's tokens, no event about the first, done naming both",
    async (_case, reason, fault) => {
      const url = await start();
      upstream.setFault(fault, { model: A });
      upstream.setFault({ kind: 'ok', answer: ANSWER_B }, { model: B });

      const result = await stream(url, freshQuestion());

      expect(result.status).toBe(200);
      expect(names(result)[0]).toBe('excerpts');
      expect(names(result).slice(1, -1).length).toBeGreaterThan(1);
      expect(new Set(names(result).slice(1, -1))).toEqual(new Set(['token']));
      expect(tokens(result).join('').trim()).toBe(ANSWER_B);
      const answer = done(result);
      expect(answer).toMatchObject({ answer: ANSWER_B, source: 'llm', degraded: false, model: B, circuit: { name: BREAKER_A } });
      expect(answer.failover).toEqual([{ model: A, reason }]);
      for (const event of result.events.slice(0, -1)) expect(event.data).not.toContain(A);
      expect([upstream.callsFor(A), upstream.callsFor(B)]).toEqual([1, 1]);
    },
  );

  it('does not fail over once a token has gone out: the stream ends interrupted and the next target is not asked', async () => {
    const url = await start();
    upstream.setFault({ kind: 'error500' }, { model: A });
    expect(done(await stream(url, freshQuestion())).model).toBe(B); // B is there to fail over to
    upstream.setFault({ kind: 'cutMidStream', afterTokens: 2, answer: 'one two three four five' }, { model: A });

    const result = await stream(url, freshQuestion());

    expect(tokens(result)).toEqual(['one ', 'two ']);
    const answer = done(result);
    expect(answer).toMatchObject({ source: 'llm', degraded: true, fallbackReason: 'interrupted' });
    expect(answer.answer).toBe('one two ');
    expect(answer).not.toHaveProperty('failover');
    expect([upstream.callsFor(A), upstream.callsFor(B)]).toEqual([2, 1]);
  });
});

describe('hedging: HF_HEDGE_AFTER_SECONDS', () => {
  // A breaker time-out far longer than the hedge delay: only the hedge can end the first target's call early.
  const HEDGE_ENV = { HF_HEDGE_AFTER_SECONDS: '0.3', CIRCUIT_BREAKER_TIMEOUT_SECONDS: '5' };

  it('asks the next target when a stream has no first token in time; it wins, the first is aborted and counts neither way', async () => {
    const url = await start(HEDGE_ENV);
    upstream.setFault({ kind: 'stallBeforeFirstToken' }, { model: A });
    upstream.setFault({ kind: 'ok', answer: ANSWER_B }, { model: B });
    const before = counted(await breaker(url, BREAKER_A));

    const { result, ms } = await timed(stream(url, freshQuestion()));

    expect(ms).toBeLessThan(4000);
    expect(tokens(result).join('').trim()).toBe(ANSWER_B);
    expect(done(result)).toMatchObject({ source: 'llm', degraded: false, model: B, failover: [{ model: A, reason: 'timeout' }] });
    await upstream.waitForAbortedByClient(1, { model: A });
    expect(counted(await breaker(url, BREAKER_A))).toEqual(before);
    await eventually(
      () => breaker(url, BREAKER_B),
      (entry) => entry.stats.successes === 1,
    );
  });

  it('hedges a JSON request too: a first target silent past the delay loses to the next, is aborted and counts neither way', async () => {
    const url = await start(HEDGE_ENV);
    upstream.setFault({ kind: 'stallBeforeFirstToken' }, { model: A });
    upstream.setFault({ kind: 'ok', answer: ANSWER_B }, { model: B });
    const before = counted(await breaker(url, BREAKER_A));

    const { result, ms } = await timed(ask<Answer>(url, { query: freshQuestion() }));

    expect(ms).toBeLessThan(4000);
    expect(result.body).toMatchObject({ answer: ANSWER_B, source: 'llm', degraded: false, model: B });
    expect(result.body.failover).toEqual([{ model: A, reason: 'timeout' }]);
    await upstream.waitForAbortedByClient(1, { model: A });
    expect(counted(await breaker(url, BREAKER_A))).toEqual(before);
  });

  it('lets the first to answer win: a first target that starts after the hedge went out still wins, and the hedge is aborted and counts neither way', async () => {
    const url = await start(HEDGE_ENV);
    upstream.setFault({ kind: 'ok', answer: 'A answers late.', latencyMs: 1000 }, { model: A });
    upstream.setFault({ kind: 'ok', answer: ANSWER_B, latencyMs: 10_000 }, { model: B });

    const { result, ms } = await timed(ask<Answer>(url, { query: freshQuestion() }));

    expect(ms).toBeLessThan(4000);
    expect(result.body).toMatchObject({ answer: 'A answers late.', source: 'llm', degraded: false, model: A });
    expect(result.body).not.toHaveProperty('failover');
    expect(upstream.callsFor(B)).toBe(1); // the hedge went out
    await upstream.waitForAbortedByClient(1, { model: B });
    expect(counted(await breaker(url, BREAKER_B))).toEqual({ failures: 0, successes: 0, failed: 0, timeouts: 0 });
  });

  it('without a hedge delay, waits for a slow first target and does not ask the next', async () => {
    const url = await start({ CIRCUIT_BREAKER_TIMEOUT_SECONDS: '5' });
    upstream.setFault({ kind: 'error500' }, { model: A });
    expect((await ask<Answer>(url, { query: freshQuestion() })).body.model).toBe(B); // B is there to ask
    upstream.setFault({ kind: 'ok', answer: 'A answers late.', latencyMs: 1000 }, { model: A });

    const { result, ms } = await timed(ask<Answer>(url, { query: freshQuestion() }));

    expect(ms).toBeGreaterThanOrEqual(900);
    expect(result.body).toMatchObject({ answer: 'A answers late.', source: 'llm', model: A });
    expect(result.body).not.toHaveProperty('failover');
    expect(upstream.callsFor(B)).toBe(1);
  });
});

describe('OpenAI-compatible /v1, through the official openai client', () => {
  const client = (url: string) => new OpenAI({ baseURL: `${url}/v1`, apiKey: 'no-key-needed', maxRetries: 0 });
  const assistantOf = (completion: ChatCompletion | ChatCompletionChunk) => (completion as unknown as { assistant?: Answer }).assistant;

  async function startWithOwnEndpoint(): Promise<string> {
    const url = await start({ HF_FALLBACK_MODELS: `${B}@${own.url}` });
    upstream.setFault({ kind: 'error500' }, { model: A });
    own.setFault({ kind: 'ok', answer: ANSWER_B });
    return url;
  }

  it('names the target that answered as the completion model, and the target passed over in its assistant object', async () => {
    const url = await startWithOwnEndpoint();

    const completion = await client(url).chat.completions.create({ model: A, messages: [{ role: 'user', content: freshQuestion() }] });

    expect(completion.model).toBe(B);
    expect(completion.choices[0]?.message.content).toBe(ANSWER_B);
    expect(assistantOf(completion)).toMatchObject({ source: 'llm', degraded: false, failover: [{ model: A, reason: 'upstream_error' }] });
    expect(own.callsFor(B)).toBe(1);
  });

  it('streams chunks that all carry the target that answered, the last with the failover', async () => {
    const url = await startWithOwnEndpoint();

    const chunks: ChatCompletionChunk[] = [];
    const completion = await client(url).chat.completions.create({
      model: A,
      messages: [{ role: 'user', content: freshQuestion() }],
      stream: true,
    });
    for await (const chunk of completion) chunks.push(chunk);

    expect(chunks.length).toBeGreaterThan(1);
    expect(new Set(chunks.map((chunk) => chunk.model))).toEqual(new Set([B]));
    expect(chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('')).toBe(ANSWER_B);
    expect(assistantOf(chunks.at(-1) as ChatCompletionChunk)).toMatchObject({
      source: 'llm',
      failover: [{ model: A, reason: 'upstream_error' }],
    });
  });

  it('lists every target in GET /v1/models, each named without its endpoint URL', async () => {
    const url = await start({ HF_FALLBACK_MODELS: `${B}@${own.url},${C}` });

    const models = await client(url).models.list();
    const raw = await (await fetch(`${url}/v1/models`)).text();

    expect(models.data.map((model) => model.id).sort()).toEqual([A, B, C].sort());
    for (const model of models.data) expect(model.object).toBe('model');
    expect(raw).not.toContain(own.url);
  });
});

describe('health and metrics: one breaker per target', () => {
  it('lists every breaker in /health/circuit-breaker and /health; one open turns both 503 while the others stay closed', async () => {
    const url = await start({ CIRCUIT_BREAKER_RESET_TIMEOUT: '30' });
    for (const name of [BREAKER_A, BREAKER_B]) {
      expect(await breaker(url, name)).toMatchObject({ status: 'up', state: 'closed', failures: 0 });
      expect((await getHealth(url, '')).body.details[name]).toMatchObject({ state: 'closed' });
    }
    upstream.setFault({ kind: 'badRequest' }, { model: A }); // passes every prompt on to B, counting nothing on A
    upstream.setFault({ kind: 'error500' }, { model: B });
    for (let i = 0; i < FAIL_THRESHOLD; i += 1) await ask(url, { query: freshQuestion() });

    const circuits = await getHealth(url, '/circuit-breaker');
    const overall = await getHealth(url, '');

    expect(circuits.status).toBe(503);
    expect(circuits.body.error[BREAKER_B]).toMatchObject({ state: 'open', failures: FAIL_THRESHOLD });
    expect(circuits.body.info[BREAKER_A]).toMatchObject({ state: 'closed', failures: 0 });
    expect(overall.status).toBe(503);
    expect(overall.body.details[BREAKER_B]).toMatchObject({ state: 'open' });
    expect(overall.body.details[BREAKER_A]).toMatchObject({ state: 'closed' });
  });

  it('counts each answer by the target that wrote it (none for a fallback) and labels every breaker series with its name', async () => {
    const url = await start();
    upstream.setFault({ kind: 'error500' }, { model: A });
    expect((await ask<Answer>(url, { query: freshQuestion() })).body.model).toBe(B);
    upstream.setFault({ kind: 'error500' }, { model: B });
    expect((await ask<Answer>(url, { query: freshQuestion() })).body.source).toBe('excerpts');

    const metrics = await scrape(url);

    expect(valueOf(metrics, 'assistant_answers_total', { source: 'llm', model: B })).toBe(1);
    expect(valueOf(metrics, 'assistant_answers_total', { source: 'llm', model: A }) ?? 0).toBe(0);
    expect(valueOf(metrics, 'assistant_answers_total', { source: 'excerpts', model: 'none' })).toBe(1);
    expect(valueOf(metrics, 'assistant_circuit_breaker_state', { breaker: BREAKER_A })).toBe(0);
    expect(valueOf(metrics, 'assistant_circuit_breaker_state', { breaker: BREAKER_B })).toBe(0);
    expect(valueOf(metrics, 'assistant_circuit_breaker_events_total', { breaker: BREAKER_A, event: 'failure' })).toBe(2);
    expect(valueOf(metrics, 'assistant_circuit_breaker_events_total', { breaker: BREAKER_B, event: 'success' })).toBe(1);
    expect(valueOf(metrics, 'assistant_circuit_breaker_events_total', { breaker: BREAKER_B, event: 'failure' })).toBe(1);
  });
});

describe('start-up: HF_FALLBACK_MODELS is checked', () => {
  /** Polls readiness until the process exits; resolves 'ready' if it ever serves instead. */
  async function exitOrReady(app: AppProcess): Promise<'ready' | { code: number | null; signal: NodeJS.Signals | null }> {
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    void app.exited.then((result) => (exit = result));
    const deadline = Date.now() + EXIT_DEADLINE_MS;
    while (Date.now() < deadline) {
      if (exit) return exit;
      const ready = await fetch(`${app.url}/health/ready`, { signal: AbortSignal.timeout(1000) }).then(
        (response) => response.status === 200,
        () => false,
      );
      if (ready) return 'ready';
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return withinMs(app.exited, 1000, 'exit on a bad HF_FALLBACK_MODELS');
  }

  it.each([
    ['an entry whose endpoint is not a URL', 'test-org/model-b@not a url'],
    ['two entries giving one breaker name (one model at two endpoints)', 'm@http://127.0.0.1:9001,m@http://127.0.0.1:9002'],
    ['the same entry twice', `${B},${B}`],
  ])('%s stops start-up with a non-zero exit and one line naming the variable, no stack trace', async (_case, value) => {
    const app = await spawnApp({ HF_ENDPOINT_URL: upstream.url, HF_MODEL: A, HF_FALLBACK_MODELS: value });

    const outcome = await exitOrReady(app);
    await app.kill(); // a no-op once it has exited

    expect(outcome).not.toBe('ready');
    expect(outcome).toMatchObject({ signal: null });
    expect(outcome).not.toMatchObject({ code: 0 });
    const lines = app
      .output()
      .split('\n')
      .filter((line) => line.includes('HF_FALLBACK_MODELS'));
    expect(lines).toHaveLength(1);
    expect(app.output()).not.toContain('    at ');
  });
});
