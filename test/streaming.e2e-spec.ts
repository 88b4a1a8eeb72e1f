// POST /assistant/query with Accept: text/event-stream, read by a plain SSE reader, against the fake upstream's
// streams and stream faults: the events the contract lists, the breaker's stream time-outs, and the upstream socket
// closed whenever the app gives up on a stream (a time-out, a stall, a client that left).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { type Fault, FakeHfUpstream } from './support/fake-hf-upstream.js';
import { eventually, getHealth, breakerEntry, type AnswerBody, type UnavailableBody } from './support/http.js';
import { KNOWN_QUESTIONS as KNOWN, NONSENSE_QUESTIONS, startTestApp, type TestApp } from './support/test-app.js';

const BREAKER = 'huggingface';
/** Bounds for a loaded 2-core machine: seconds, not milliseconds. */
const HTTP_TIMEOUT_MS = 10_000;

interface SseEvent {
  event: string;
  data: string;
}

interface Streamed {
  status: number;
  contentType: string | null;
  retryAfter: string | null;
  events: SseEvent[];
  /** The raw body when it was not an event stream (the 503, a 400). */
  text: string;
}

let upstream: FakeHfUpstream;
let testApp: TestApp;
let questionNumber = 0;

beforeAll(async () => {
  upstream = await FakeHfUpstream.start();
  testApp = await startTestApp({
    HF_ENDPOINT_URL: upstream.url,
    CIRCUIT_BREAKER_TIMEOUT_SECONDS: '1',
    HF_STREAM_IDLE_TIMEOUT_SECONDS: '0.5',
    CIRCUIT_BREAKER_FAIL_THRESHOLD: '3',
    CIRCUIT_BREAKER_RESET_TIMEOUT: '0.5',
  });
});

afterAll(async () => {
  await testApp?.close();
  await upstream?.close();
});

beforeEach(async () => {
  // Every test starts with a closed circuit and no failure counted: once the open period is over, one healthy call
  // (the half-open trial, or any call) closes it and starts the count from zero.
  upstream.setFault({ kind: 'ok' });
  await eventually(
    () => getHealth(testApp.url, '/circuit-breaker'),
    (health) => breakerEntry(health.body, BREAKER)?.state !== 'open',
  );
  expect(done(await stream(freshQuestion())).source).toBe('llm');
  upstream.reset();
});

/** A question with excerpts that no earlier test asked: its answer is not cached yet. */
function freshQuestion(): string {
  questionNumber += 1;
  return `${KNOWN[questionNumber % KNOWN.length]} (streamed question ${questionNumber})`;
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

async function stream(query: string, options: { signal?: AbortSignal; accept?: string } = {}): Promise<Streamed> {
  const response = await fetch(`${testApp.url}/assistant/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: options.accept ?? 'text/event-stream' },
    body: JSON.stringify({ query }),
    signal: options.signal ?? AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  const text = await response.text();
  const contentType = response.headers.get('content-type');
  return {
    status: response.status,
    contentType,
    retryAfter: response.headers.get('retry-after'),
    events: contentType?.startsWith('text/event-stream') ? parseEvents(text) : [],
    text,
  };
}

const names = (result: Streamed) => result.events.map((event) => event.event);
const tokens = (result: Streamed) =>
  result.events.filter((event) => event.event === 'token').map((event) => (JSON.parse(event.data) as { text: string }).text);
function done(result: Streamed): AnswerBody {
  const last = result.events.at(-1);
  expect(last?.event).toBe('done');
  return JSON.parse(last?.data ?? '{}') as AnswerBody;
}

async function breakerFailures(): Promise<number> {
  return Number(breakerEntry((await getHealth(testApp.url, '/circuit-breaker')).body, BREAKER)?.failures);
}

describe('a healthy model', () => {
  it('streams excerpts, then the tokens as they come, then done with the whole answer; the same question again comes from the cache as one token', async () => {
    upstream.setFault({ kind: 'ok', answer: 'Half-open lets exactly one trial call through to the model.' });
    const question = freshQuestion();
    const first = await stream(question);
    expect(first.status).toBe(200);
    expect(first.contentType).toMatch(/^text\/event-stream/);
    expect(names(first)[0]).toBe('excerpts');
    expect(names(first).filter((name) => name === 'token').length).toBeGreaterThan(3);
    expect(
      names(first)
        .slice(1, -1)
        .every((name) => name === 'token'),
    ).toBe(true);
    const answer = done(first);
    expect(answer).toMatchObject({ source: 'llm', degraded: false, fallbackReason: null });
    expect(tokens(first).join('').trim()).toBe(answer.answer);
    expect((JSON.parse(first.events[0]?.data ?? '{}') as { excerpts: unknown[] }).excerpts).toEqual(answer.excerpts);

    const again = await stream(question);
    expect(names(again)).toEqual(['excerpts', 'token', 'done']);
    expect(tokens(again)).toEqual([answer.answer]);
    expect(done(again)).toMatchObject({ source: 'cache', degraded: false, answer: answer.answer });
  });

  it('sends each token when the model sends it, not at the end: the first arrives long before the last', async () => {
    upstream.setFault({ kind: 'slowTokens', tokenIntervalMs: 200, answer: 'one two three four five six seven eight' });
    const started = performance.now();
    const response = await fetch(`${testApp.url}/assistant/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: freshQuestion() }),
    });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    let firstTokenAt: number | undefined;
    for (;;) {
      const { value, done: ended } = await reader.read();
      if (ended) break;
      text += value;
      if (firstTokenAt === undefined && text.includes('event: token')) firstTokenAt = performance.now() - started;
    }
    const total = performance.now() - started;
    // Eight tokens 200 ms apart: the whole takes 1.4 s or more; the first token must not wait for it.
    expect(total).toBeGreaterThan(1400);
    expect(firstTokenAt).toBeLessThan(total - 700);
    expect(done({ status: 200, contentType: 'text/event-stream', retryAfter: null, events: parseEvents(text), text })).toMatchObject({
      source: 'llm',
      degraded: false,
    });
  });

  it('answers JSON, not a stream, when the client does not ask for one', async () => {
    const result = await stream(freshQuestion(), { accept: 'application/json' });
    expect(result.contentType).toMatch(/^application\/json/);
    expect(JSON.parse(result.text)).toMatchObject({ source: 'llm' });
  });

  it('a bad body is a 400 JSON answer, not a stream', async () => {
    const response = await fetch(`${testApp.url}/assistant/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: '' }),
    });
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await response.json()).toMatchObject({ statusCode: 400 });
  });
});

describe('the model failing before its first token', () => {
  it('stalled past the time-out: the fallbacks as done (no token event), a failure for the breaker, and the upstream socket closed', async () => {
    upstream.setFault({ kind: 'stallBeforeFirstToken' });
    const failuresBefore = await breakerFailures();
    const result = await stream(freshQuestion());
    expect(result.status).toBe(200);
    expect(names(result)).toEqual(['excerpts', 'done']);
    expect(done(result)).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'timeout' });
    expect(await breakerFailures()).toBe(failuresBefore + 1);
    await eventually(
      () => Promise.resolve(upstream.stats.streamsAbortedByClient),
      (aborted) => aborted >= 1,
    );
  });

  it('an HTTP error before the stream: the fallbacks as done, with the error’s reason', async () => {
    upstream.setFault({ kind: 'error500' });
    const result = await stream(freshQuestion());
    expect(names(result)).toEqual(['excerpts', 'done']);
    expect(done(result)).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'upstream_error' });
  });

  it('with nothing to fall back on: the 503 JSON with Retry-After, before any event', async () => {
    upstream.setFault({ kind: 'stallBeforeFirstToken' });
    const result = await stream(NONSENSE_QUESTIONS[0]);
    expect(result.status).toBe(503);
    expect(result.contentType).toMatch(/^application\/json/);
    expect(Number(result.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(result.text)).toMatchObject({ statusCode: 503, reason: 'timeout' } satisfies Partial<UnavailableBody>);
  });
});

describe('the model failing after tokens were sent', () => {
  it.each<[string, Fault]>([
    ['stalls mid-stream (past the idle time-out)', { kind: 'stallMidStream', afterTokens: 3 }],
    ['is cut mid-stream', { kind: 'cutMidStream', afterTokens: 3 }],
    ['sends an error event inside the 200 stream', { kind: 'errorMidStream', afterTokens: 3 }],
    ['sends a malformed chunk', { kind: 'malformedChunk', afterTokens: 3 }],
  ])('%s: done with the partial answer, degraded, interrupted; never cached; a failure for the breaker', async (_case, fault) => {
    upstream.setFault({ ...fault, answer: 'alpha beta gamma delta epsilon zeta eta theta' } as Fault);
    const failuresBefore = await breakerFailures();
    const question = freshQuestion();
    const result = await stream(question);
    expect(result.status).toBe(200);
    expect(names(result)).toEqual(['excerpts', 'token', 'token', 'token', 'done']);
    const answer = done(result);
    expect(answer).toMatchObject({ source: 'llm', degraded: true, fallbackReason: 'interrupted' });
    expect(answer.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(answer.answer).toBe(tokens(result).join(''));
    expect(answer.answer).toBe('alpha beta gamma ');
    expect(await breakerFailures()).toBe(failuresBefore + 1);

    upstream.setFault({ kind: 'ok' });
    expect(done(await stream(question)).source).toBe('llm');
  });

  it('a stall mid-stream closes the upstream socket at the idle time-out', async () => {
    upstream.setFault({ kind: 'stallMidStream', afterTokens: 2 });
    await stream(freshQuestion());
    await eventually(
      () => Promise.resolve(upstream.stats.streamsAbortedByClient),
      (aborted) => aborted === 1,
    );
  });

  it('slow but steady tokens (each gap under the idle time-out) are no failure, however long the whole answer takes', async () => {
    upstream.setFault({ kind: 'slowTokens', tokenIntervalMs: 250, answer: 'a b c d e f g' });
    const failuresBefore = await breakerFailures();
    const result = await stream(freshQuestion());
    expect(done(result)).toMatchObject({ source: 'llm', degraded: false });
    expect(tokens(result).join('')).toBe('a b c d e f g');
    expect(await breakerFailures()).toBe(failuresBefore);
  });
});

describe('the client', () => {
  it('leaving mid-stream aborts the model stream (its socket closes) and counts as nothing for the breaker', async () => {
    upstream.setFault({ kind: 'slowTokens', tokenIntervalMs: 200, answer: 'one two three four five six seven eight nine ten' });
    const failuresBefore = await breakerFailures();
    const controller = new AbortController();
    const response = await fetch(`${testApp.url}/assistant/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: freshQuestion() }),
      signal: controller.signal,
    });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    while (!text.includes('event: token')) text += (await reader.read()).value ?? '';
    controller.abort();
    await reader.cancel().catch(() => undefined);

    await eventually(
      () => Promise.resolve(upstream.stats.streamsAbortedByClient),
      (aborted) => aborted === 1,
    );
    expect(upstream.stats.lastStream?.tokens).toBeLessThan(10);
    const entry = breakerEntry((await getHealth(testApp.url, '/circuit-breaker')).body, BREAKER);
    expect(entry?.failures).toBe(failuresBefore);
    expect(entry?.inFlight).toBe(0);
  });
});

describe('the breaker and streams', () => {
  it('streams that fail open the circuit like any failure; then streams get the fallbacks at once, without a model call', async () => {
    upstream.setFault({ kind: 'cutMidStream', afterTokens: 1 });
    for (let i = 0; i < 3; i++) expect(done(await stream(freshQuestion())).fallbackReason).toBe('interrupted');
    const calls = upstream.calls;
    const result = await stream(freshQuestion());
    expect(names(result)).toEqual(['excerpts', 'done']);
    expect(done(result)).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'circuit_open' });
    expect(upstream.calls).toBe(calls);
  });
});
