// Failover across model targets in a fleet: three replicas of the real HTTP app on one real redis-server
// (CIRCUIT_BREAKER_SHARED=true), two targets behind one fake upstream with faults per model. Every target's breaker
// is shared like the first one, so a circuit opened through one replica is obeyed by the others.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import { ask, breakerEntry, type BreakerEntry, eventually, getHealth } from './support/http.js';
import { RedisTestServer } from './support/redis-server.js';
import { FAIL_THRESHOLD, KNOWN_QUESTIONS, startTestApp, type TestApp } from './support/test-app.js';

const A = 'test-org/model-a';
const B = 'test-org/model-b';
const BREAKER_A = 'huggingface';
const BREAKER_B = `huggingface:${B}`;
const ANSWER_B = 'B says: the fleet shares one circuit per target.';
/** A reset period no test waits for: no half-open trial happens inside a test. */
const FLEET_ENV = { CIRCUIT_BREAKER_SHARED: 'true', CIRCUIT_BREAKER_RESET_TIMEOUT: '30', HF_MODEL: A, HF_FALLBACK_MODELS: B };
/** The contract: an opening anywhere is obeyed everywhere within a second (and a little slack for a loaded box). */
const OBEYED_WITHIN_MS = 1500;

interface Answer {
  source: 'llm' | 'cache' | 'excerpts';
  degraded: boolean;
  fallbackReason: string | null;
  circuit: { name: string; state: string };
  model?: string;
  failover?: Array<{ model: string; reason: string }>;
}

type FleetEntry = BreakerEntry & { scope?: string };

let redis: RedisTestServer;
let upstream: FakeHfUpstream;
const apps: TestApp[] = [];
let questionNumber = 0;

/** A question with excerpts that no earlier request asked: no cache hit (the cache is shared too), no call to share. */
function freshQuestion(): { query: string } {
  questionNumber += 1;
  return { query: `${KNOWN_QUESTIONS[questionNumber % KNOWN_QUESTIONS.length]} (fleet failover question ${questionNumber})` };
}

async function fleet(size: number): Promise<TestApp[]> {
  for (let i = 0; i < size; i += 1) {
    apps.push(await startTestApp({ REDIS_URL: redis.url, HF_ENDPOINT_URL: upstream.url, ...FLEET_ENV }));
  }
  return apps.slice(-size);
}

async function breaker(app: TestApp, name: string): Promise<FleetEntry> {
  const health = await getHealth(app.url, '/circuit-breaker');
  const entry = breakerEntry(health.body, name);
  if (!entry) throw new Error(`no health entry for breaker ${name}: ${health.text}`);
  return entry;
}

function seesOpen(app: TestApp, name: string): Promise<FleetEntry> {
  return eventually(
    () => breaker(app, name),
    (entry) => entry.state === 'open',
    OBEYED_WITHIN_MS,
  );
}

beforeAll(async () => {
  [redis, upstream] = await Promise.all([RedisTestServer.start(), FakeHfUpstream.start()]);
});

beforeEach(async () => {
  upstream.reset();
  await redis.flushAll();
});

afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

afterAll(async () => {
  await redis?.stop();
  await upstream?.close();
});

describe('failover in a fleet sharing its circuits', () => {
  it("obeys the first target's circuit opened through one replica on every other: no call to it, the next target answers, reason circuit_open", async () => {
    const [first, second, third] = await fleet(3);
    upstream.setFault({ kind: 'error500' }, { model: A });
    upstream.setFault({ kind: 'ok', answer: ANSWER_B }, { model: B });

    for (let i = 0; i < FAIL_THRESHOLD; i += 1) {
      const { body } = await ask<Answer>(first.url, freshQuestion());
      expect(body).toMatchObject({ source: 'llm', degraded: false, model: B, failover: [{ model: A, reason: 'upstream_error' }] });
    }
    expect(await breaker(first, BREAKER_A)).toMatchObject({ state: 'open', scope: 'fleet' });
    const callsToA = upstream.callsFor(A);
    expect(callsToA).toBe(FAIL_THRESHOLD);

    for (const replica of [second, third]) {
      expect(await seesOpen(replica, BREAKER_A)).toMatchObject({ scope: 'fleet', failures: FAIL_THRESHOLD });
      const { status, body } = await ask<Answer>(replica.url, freshQuestion());
      expect(status).toBe(200);
      expect(body).toMatchObject({
        source: 'llm',
        degraded: false,
        fallbackReason: null,
        model: B,
        circuit: { name: BREAKER_A, state: 'open' },
      });
      expect(body.failover).toEqual([{ model: A, reason: 'circuit_open' }]);
    }

    expect(upstream.callsFor(A)).toBe(callsToA);
    expect(upstream.callsFor(B)).toBe(FAIL_THRESHOLD + 2);
    for (const replica of [first, second, third]) {
      expect(await breaker(replica, BREAKER_B)).toMatchObject({ state: 'closed', scope: 'fleet', failures: 0 });
    }
  });

  it("shares the next target's circuit too: with both opened through one replica, the others call neither and take the fallbacks", async () => {
    const [first, second, third] = await fleet(3);
    upstream.setFault({ kind: 'error500' }, { model: A });
    upstream.setFault({ kind: 'error500' }, { model: B });

    for (let i = 0; i < FAIL_THRESHOLD; i += 1) await ask<Answer>(first.url, freshQuestion());
    expect([upstream.callsFor(A), upstream.callsFor(B)]).toEqual([FAIL_THRESHOLD, FAIL_THRESHOLD]);
    upstream.setFault({ kind: 'ok' }, { model: B }); // healthy again, but its circuit is open for the whole fleet

    for (const replica of [second, third]) {
      expect(await seesOpen(replica, BREAKER_B)).toMatchObject({ scope: 'fleet', failures: FAIL_THRESHOLD });
      expect(await seesOpen(replica, BREAKER_A)).toMatchObject({ scope: 'fleet' });
      const { body } = await ask<Answer>(replica.url, freshQuestion());
      expect(body).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'circuit_open', circuit: { name: BREAKER_A } });
      expect(body).not.toHaveProperty('failover');
    }

    expect([upstream.callsFor(A), upstream.callsFor(B)]).toEqual([FAIL_THRESHOLD, FAIL_THRESHOLD]);
  });

  it('answers from the next target in SSE and through /v1 on the replicas that only heard of the opening', async () => {
    const [first, second, third] = await fleet(3);
    upstream.setFault({ kind: 'error500' }, { model: A });
    upstream.setFault({ kind: 'ok', answer: ANSWER_B }, { model: B });
    for (let i = 0; i < FAIL_THRESHOLD; i += 1) await ask<Answer>(first.url, freshQuestion());
    const callsToA = upstream.callsFor(A);

    for (const replica of [second, third]) {
      await seesOpen(replica, BREAKER_A);
      const response = await fetch(`${replica.url}/assistant/query`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify(freshQuestion()),
      });
      const events = (await response.text()).trim().split('\n\n');
      const done = events.find((event) => event.startsWith('event: done'));
      const tokens = events.filter((event) => event.startsWith('event: token'));
      expect(tokens.length).toBeGreaterThan(0);
      expect(JSON.parse(done?.split('\ndata: ')[1] ?? '{}')).toMatchObject({
        source: 'llm',
        model: B,
        answer: ANSWER_B,
        failover: [{ model: A, reason: 'circuit_open' }],
      });

      const client = new OpenAI({ baseURL: `${replica.url}/v1`, apiKey: 'no-key-needed', maxRetries: 0 });
      const completion = await client.chat.completions.create({
        model: 'any',
        messages: [{ role: 'user', content: freshQuestion().query }],
      });
      expect(completion.model).toBe(B);
      expect(completion.choices[0]?.message.content).toBe(ANSWER_B);
      const stream = await client.chat.completions.create({
        model: 'any',
        stream: true,
        messages: [{ role: 'user', content: freshQuestion().query }],
      });
      const models = new Set<string>();
      let text = '';
      for await (const chunk of stream) {
        models.add(chunk.model);
        text += chunk.choices[0]?.delta.content ?? '';
      }
      expect({ models: [...models], text }).toEqual({ models: [B], text: ANSWER_B });
    }
    expect(upstream.callsFor(A)).toBe(callsToA);
  });
});
