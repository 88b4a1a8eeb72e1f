// Coalescing on one replica (the contract's Coalescing): identical questions in flight share one model call, in
// JSON, as streams, through the OpenAI-compatible route (with the official openai client), when the leader fails,
// and when a leader's or a follower's client leaves. The real HTTP app against the fake upstream, which counts calls.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import type { AnswerBody } from './support/http.js';
import { KNOWN_QUESTIONS, NONSENSE_QUESTIONS, startTestApp, type TestApp } from './support/test-app.js';

const MODEL = 'test-org/coalescing-model';
/** How long the fake takes to answer: every request of a test arrives while the first call is in flight. */
const LATENCY_MS = 2000;
/** Bounds for a loaded 2-core machine: seconds, not milliseconds. */
const HTTP_TIMEOUT_MS = 15_000;
/** The breaker's time-out and the deadline stay well above the fake's latency: no call is cut. */
const APP_ENV = {
  HF_MODEL: MODEL,
  CIRCUIT_BREAKER_TIMEOUT_SECONDS: '10',
  ASSISTANT_DEADLINE_SECONDS: '10',
  CIRCUIT_BREAKER_FAIL_THRESHOLD: '5',
  CIRCUIT_BREAKER_MAX_CONCURRENT: '100',
  ASSISTANT_COALESCE: 'true',
};

type Answer = AnswerBody & { model?: string; coalesced?: boolean; failover?: unknown };

interface SseEvent {
  event: string;
  data: unknown;
}

let upstream: FakeHfUpstream;
let questionNumber = 0;

/** A question with excerpts that no earlier test asked: its answer is not cached yet. */
function freshQuestion(): string {
  questionNumber += 1;
  return `${KNOWN_QUESTIONS[questionNumber % KNOWN_QUESTIONS.length]} (coalesced question ${questionNumber})`;
}

async function ask(app: TestApp, query: string, signal?: AbortSignal): Promise<{ status: number; body: Answer }> {
  const response = await fetch(`${app.url}/assistant/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query }),
    signal: signal ?? AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  return { status: response.status, body: (await response.json()) as Answer };
}

async function stream(app: TestApp, query: string): Promise<{ status: number; events: SseEvent[] }> {
  const response = await fetch(`${app.url}/assistant/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query }),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  const text = await response.text();
  const events = text
    .split('\n\n')
    .filter((block) => block.trim() !== '' && !block.startsWith(':'))
    .map((block) => {
      const field = (name: string) =>
        block
          .split('\n')
          .find((line) => line.startsWith(`${name}: `))
          ?.slice(name.length + 2) ?? '';
      return { event: field('event'), data: JSON.parse(field('data')) as unknown };
    });
  return { status: response.status, events };
}

const doneOf = (events: SseEvent[]): Answer => events.at(-1)?.data as Answer;
/** The events as the leader's and a follower's should agree on: a follower's done says coalesced, nothing else differs. */
const withoutCoalesced = (events: SseEvent[]): SseEvent[] =>
  events.map(({ event, data }) => {
    if (event !== 'done') return { event, data };
    const { coalesced: _coalesced, ...rest } = data as Answer;
    return { event, data: rest };
  });

async function coalescedTotal(app: TestApp, scope: string): Promise<number> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const match = new RegExp(`^assistant_coalesced_requests_total\\{scope="${scope}"\\} (\\d+)$`, 'm').exec(text);
  return Number(match?.[1] ?? 0);
}

/** One leader (no `coalesced`) and every other answer coalesced, all with the leader's text and model. */
function expectOneLeader(bodies: Answer[]): void {
  const leaders = bodies.filter((body) => body.coalesced === undefined);
  expect(leaders).toHaveLength(1);
  expect(bodies.filter((body) => body.coalesced === true)).toHaveLength(bodies.length - 1);
  for (const body of bodies) {
    expect(body).toMatchObject({ source: 'llm', degraded: false, fallbackReason: null, model: MODEL, answer: leaders[0].answer });
  }
}

beforeAll(async () => {
  upstream = await FakeHfUpstream.start();
});

afterAll(async () => {
  await upstream.close();
});

beforeEach(() => upstream.reset());

describe('one replica, ASSISTANT_COALESCE=true', () => {
  let app: TestApp;

  beforeAll(async () => {
    app = await startTestApp({ ...APP_ENV, HF_ENDPOINT_URL: upstream.url });
  });

  afterAll(async () => {
    await app.close();
  });

  it('answers 50 identical questions at once with 1 model call: 1 leader, 49 coalesced, all the same answer', async () => {
    upstream.setFault({ kind: 'ok', latencyMs: LATENCY_MS, answer: 'One call answers them all.' });
    const before = await coalescedTotal(app, 'replica');
    const query = freshQuestion();

    const answers = await Promise.all(Array.from({ length: 50 }, () => ask(app, query)));

    expect(answers.map((answer) => answer.status)).toEqual(Array.from({ length: 50 }, () => 200));
    expectOneLeader(answers.map((answer) => answer.body));
    expect(upstream.callsFor(MODEL)).toBe(1);
    expect((await coalescedTotal(app, 'replica')) - before).toBe(49);
    // The leader's answer was cached as usual.
    expect((await ask(app, query)).body.source).toBe('cache');
  });

  it("streams every follower every event from the start, equal to the leader's, with 1 model call", async () => {
    upstream.setFault({ kind: 'slowTokens', tokenIntervalMs: 150, latencyMs: 500, answer: 'Every follower gets every token in order.' });
    const query = freshQuestion();

    const early = Array.from({ length: 10 }, () => stream(app, query));
    // Ten more join once tokens have gone out: they get a replay of those, then the rest live.
    await upstream.waitForTokens(2, HTTP_TIMEOUT_MS);
    const late = Array.from({ length: 10 }, () => stream(app, query));
    const streams = await Promise.all([...early, ...late]);

    expect(upstream.callsFor(MODEL)).toBe(1);
    expectOneLeader(streams.map((result) => doneOf(result.events)));
    const leader = streams.find((result) => doneOf(result.events).coalesced === undefined)!;
    const names = leader.events.map((event) => event.event);
    expect(names[0]).toBe('excerpts');
    expect(names.at(-1)).toBe('done');
    expect(names.slice(1, -1).every((name) => name === 'token')).toBe(true);
    expect(names.length).toBeGreaterThan(4);
    for (const follower of streams) {
      expect(follower.status).toBe(200);
      expect(withoutCoalesced(follower.events)).toEqual(withoutCoalesced(leader.events));
    }
  });

  it("gives a JSON follower of a streamed call that call's answer, and a streaming follower of a JSON call the answer as one token", async () => {
    upstream.setFault({ kind: 'slowTokens', tokenIntervalMs: 100, latencyMs: 500, answer: 'Mixed transports share the call.' });
    const streamedFirst = freshQuestion();
    const leaderStream = stream(app, streamedFirst);
    await upstream.waitForCalls(1, HTTP_TIMEOUT_MS);
    const jsonFollower = await ask(app, streamedFirst);
    expect(jsonFollower.body).toMatchObject({ source: 'llm', coalesced: true, answer: 'Mixed transports share the call.' });
    expect(doneOf((await leaderStream).events).coalesced).toBeUndefined();

    upstream.setFault({ kind: 'ok', latencyMs: LATENCY_MS, answer: 'A JSON call streamed to a follower.' });
    const jsonFirst = freshQuestion();
    const leaderJson = ask(app, jsonFirst);
    await upstream.waitForCalls(2, HTTP_TIMEOUT_MS);
    const streamFollower = await stream(app, jsonFirst);
    expect(streamFollower.events.map((event) => event.event)).toEqual(['excerpts', 'token', 'done']);
    expect(streamFollower.events[1].data).toEqual({ text: 'A JSON call streamed to a follower.' });
    expect(doneOf(streamFollower.events)).toMatchObject({ coalesced: true, answer: 'A JSON call streamed to a follower.' });
    expect((await leaderJson).body.coalesced).toBeUndefined();
    expect(upstream.callsFor(MODEL)).toBe(2);
  });

  it("gives a failing leader's followers the fallbacks at once, with 1 model call: excerpts, or the 503 with nothing to fall back on", async () => {
    upstream.setFault({ kind: 'error500', latencyMs: LATENCY_MS });
    const query = freshQuestion();
    const answers = await Promise.all(Array.from({ length: 20 }, () => ask(app, query)));
    expect(upstream.callsFor(MODEL)).toBe(1);
    for (const { status, body } of answers) {
      expect(status).toBe(200);
      expect(body).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'upstream_error' });
      expect(body.coalesced).toBeUndefined();
    }

    upstream.reset();
    upstream.setFault({ kind: 'error500', latencyMs: LATENCY_MS });
    const nothingToFallBackOn = await Promise.all(Array.from({ length: 20 }, () => ask(app, NONSENSE_QUESTIONS[0])));
    expect(upstream.callsFor(MODEL)).toBe(1);
    for (const { status, body } of nothingToFallBackOn)
      expect({ status, reason: (body as unknown as { reason: string }).reason }).toEqual({ status: 503, reason: 'upstream_error' });
  });

  it('gives a JSON follower of a stream that broke off the fallbacks, and a streaming follower the same interrupted events', async () => {
    upstream.setFault({
      kind: 'cutMidStream',
      afterTokens: 2,
      tokenIntervalMs: 200,
      latencyMs: 500,
      answer: 'This stream will not end well at all.',
    });
    const query = freshQuestion();
    const leader = stream(app, query);
    await upstream.waitForCalls(1, HTTP_TIMEOUT_MS);
    const [jsonFollower, streamFollower] = await Promise.all([ask(app, query), stream(app, query)]);
    const leaderEvents = (await leader).events;

    expect(doneOf(leaderEvents)).toMatchObject({ source: 'llm', degraded: true, fallbackReason: 'interrupted' });
    expect(withoutCoalesced(streamFollower.events)).toEqual(withoutCoalesced(leaderEvents));
    expect(jsonFollower.body).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'upstream_error' });
    expect(upstream.callsFor(MODEL)).toBe(1);
  });

  it("lets the call finish when the leader's client leaves while followers wait, and caches its answer", async () => {
    upstream.setFault({ kind: 'ok', latencyMs: LATENCY_MS, answer: 'Finished for the followers.' });
    const query = freshQuestion();
    const leaderGone = new AbortController();
    const leader = ask(app, query, leaderGone.signal).catch((error: unknown) => error);
    await upstream.waitForCalls(1, HTTP_TIMEOUT_MS);
    const followers = Array.from({ length: 5 }, () => ask(app, query));
    // The followers are waiting once their requests reached the app; a turn of the event loop is not enough on a busy machine.
    await new Promise((resolve) => setTimeout(resolve, 300));
    leaderGone.abort();

    expect(await leader).toMatchObject({ name: 'AbortError' });
    for (const follower of await Promise.all(followers))
      expect(follower.body).toMatchObject({ source: 'llm', coalesced: true, answer: 'Finished for the followers.' });
    expect(upstream.stats.abortedByClient).toBe(0);
    expect((await ask(app, query)).body.source).toBe('cache');
    expect(upstream.callsFor(MODEL)).toBe(1);
  });

  it('never disturbs the call when a follower leaves; a leader alone that leaves aborts it, as without coalescing', async () => {
    upstream.setFault({ kind: 'ok', latencyMs: LATENCY_MS, answer: 'The leader still gets it.' });
    const query = freshQuestion();
    const leader = ask(app, query);
    await upstream.waitForCalls(1, HTTP_TIMEOUT_MS);
    const followerGone = new AbortController();
    const follower = ask(app, query, followerGone.signal).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 300));
    followerGone.abort();
    expect(await follower).toMatchObject({ name: 'AbortError' });
    expect((await leader).body).toMatchObject({ source: 'llm', answer: 'The leader still gets it.' });
    expect(upstream.stats.abortedByClient).toBe(0);

    const alone = new AbortController();
    const lone = ask(app, freshQuestion(), alone.signal).catch((error: unknown) => error);
    await upstream.waitForCalls(2, HTTP_TIMEOUT_MS);
    alone.abort();
    expect(await lone).toMatchObject({ name: 'AbortError' });
    await upstream.waitForAbortedByClient(1, {}, HTTP_TIMEOUT_MS);
  });

  it('gives every caller of the OpenAI-compatible route the same completion from 1 model call (the official openai client)', async () => {
    upstream.setFault({ kind: 'ok', latencyMs: LATENCY_MS, answer: 'The same completion for all.' });
    const client = new OpenAI({ baseURL: `${app.url}/v1`, apiKey: 'no-key-needed', maxRetries: 0 });
    const question = freshQuestion();
    const completions = await Promise.all(
      Array.from({ length: 10 }, () => client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: question }] })),
    );
    expect(upstream.callsFor(MODEL)).toBe(1);
    for (const completion of completions) {
      expect(completion.choices[0].message.content).toBe('The same completion for all.');
      expect(completion.model).toBe(MODEL);
      // `coalesced` is not part of the OpenAI shape's assistant object.
      expect((completion as unknown as { assistant: Record<string, unknown> }).assistant).toMatchObject({ source: 'llm', degraded: false });
      expect((completion as unknown as { assistant: Record<string, unknown> }).assistant).not.toHaveProperty('coalesced');
    }

    upstream.reset();
    upstream.setFault({ kind: 'slowTokens', tokenIntervalMs: 100, latencyMs: 500, answer: 'Streamed chunks for all.' });
    const streamed = freshQuestion();
    const texts = await Promise.all(
      Array.from({ length: 5 }, async () => {
        let text = '';
        const chunks = await client.chat.completions.create({
          model: MODEL,
          stream: true,
          messages: [{ role: 'user', content: streamed }],
        });
        for await (const chunk of chunks) text += chunk.choices[0]?.delta.content ?? '';
        return text;
      }),
    );
    expect(texts).toEqual(Array.from({ length: 5 }, () => 'Streamed chunks for all.'));
    expect(upstream.callsFor(MODEL)).toBe(1);
  });
});

describe('limits count one model call for the leader', () => {
  let app: TestApp | undefined;

  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('a bulkhead of 1 and RATE_LIMIT_CONCURRENT=1 still answer 10 identical questions from the model, none overloaded', async () => {
    app = await startTestApp({
      ...APP_ENV,
      HF_ENDPOINT_URL: upstream.url,
      CIRCUIT_BREAKER_MAX_CONCURRENT: '1',
      RATE_LIMIT_CONCURRENT: '1',
    });
    upstream.setFault({ kind: 'ok', latencyMs: LATENCY_MS, answer: 'One place is enough.' });
    const query = freshQuestion();
    const answers = await Promise.all(Array.from({ length: 10 }, () => ask(app!, query)));
    expectOneLeader(answers.map((answer) => answer.body));
    expect(upstream.callsFor(MODEL)).toBe(1);
  });
});

describe('ASSISTANT_COALESCE=false', () => {
  let app: TestApp;

  beforeAll(async () => {
    app = await startTestApp({ ...APP_ENV, HF_ENDPOINT_URL: upstream.url, ASSISTANT_COALESCE: 'false' });
  });

  afterAll(async () => {
    await app.close();
  });

  it('makes one model call per request, as before: 10 identical questions, 10 calls, none coalesced', async () => {
    upstream.setFault({ kind: 'ok', latencyMs: 1000, answer: 'Each asks on its own.' });
    const query = freshQuestion();
    const answers = await Promise.all(Array.from({ length: 10 }, () => ask(app, query)));
    expect(upstream.callsFor(MODEL)).toBe(10);
    for (const { body } of answers) expect(body.coalesced).toBeUndefined();
  });
});
