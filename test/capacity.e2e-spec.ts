// Protecting the model's capacity: the bulkhead, and model calls that end when their client goes away.
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import { type AnswerBody, ask, eventually, getHealth } from './support/http.js';
import { KNOWN_QUESTIONS as KNOWN, startTestApp, type TestApp } from './support/test-app.js';

let upstream: FakeHfUpstream;
let testApp: TestApp | undefined;

beforeEach(async () => {
  upstream = await FakeHfUpstream.start();
});

afterEach(async () => {
  await testApp?.close();
  testApp = undefined;
  await upstream.close();
});

describe('the bulkhead (CIRCUIT_BREAKER_MAX_CONCURRENT)', () => {
  it('sends at most that many calls to the model at once and answers the rest from the fallbacks at once, as overloaded', async () => {
    testApp = await startTestApp({
      HF_ENDPOINT_URL: upstream.url,
      CIRCUIT_BREAKER_MAX_CONCURRENT: '2',
      CIRCUIT_BREAKER_TIMEOUT_SECONDS: '10',
    });
    upstream.setFault({ kind: 'ok', latencyMs: 1500 });

    const started = performance.now();
    const answers = await Promise.all(
      KNOWN.slice(0, 6).map(async (query) => {
        const result = await ask(testApp?.url ?? '', { query });
        return { ...result, ms: performance.now() - started };
      }),
    );

    expect(upstream.peakInFlight).toBe(2);
    expect(answers.every(({ status }) => status === 200)).toBe(true);
    const fromModel = answers.filter(({ body }) => body.source === 'llm');
    const overloaded = answers.filter(({ body }) => body.fallbackReason === 'overloaded');
    expect(fromModel).toHaveLength(2);
    expect(overloaded).toHaveLength(4);
    for (const { body, ms } of overloaded) {
      expect(body).toMatchObject({ source: 'excerpts', degraded: true, retryAfterSeconds: 1, circuit: { state: 'closed' } });
      // answered without waiting for the model's 1.5 s
      expect(ms).toBeLessThan(1500);
    }
    const entry = (await getHealth(testApp.url, '/circuit-breaker')).body.details['huggingface'];
    expect(entry).toMatchObject({ state: 'closed', failures: 0, maxConcurrent: 2, stats: { overloaded: 4, failures: 0 } });
    const metrics = await (await fetch(`${testApp.url}/metrics`)).text();
    expect(metrics).toContain('assistant_circuit_breaker_events_total{breaker="huggingface",event="overloaded"} 4');
    expect(metrics).toContain('assistant_answers_total{source="excerpts",fallback_reason="overloaded",model="none"} 4');
  });
});

describe('model calls in flight per caller (RATE_LIMIT_CONCURRENT)', () => {
  const KEY_A = 'caller-a-key-0123456789';
  const KEY_B = 'caller-b-key-0123456789';

  async function askAs(key: string, query: string): Promise<{ status: number; body: AnswerBody; ms: number }> {
    const started = performance.now();
    const response = await fetch(`${testApp?.url ?? ''}/assistant/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query }),
    });
    return { status: response.status, body: (await response.json()) as AnswerBody, ms: performance.now() - started };
  }

  it("answers a caller's calls beyond the limit from the fallbacks at once, as overloaded, while another caller's go to the model", async () => {
    testApp = await startTestApp({
      HF_ENDPOINT_URL: upstream.url,
      ASSISTANT_API_KEYS: `${KEY_A},${KEY_B}`,
      RATE_LIMIT_CONCURRENT: '1',
      CIRCUIT_BREAKER_TIMEOUT_SECONDS: '10',
    });
    upstream.setFault({ kind: 'ok', latencyMs: 1500 });

    const [a1, a2, a3, b1] = await Promise.all([
      askAs(KEY_A, KNOWN[0]),
      askAs(KEY_A, KNOWN[1]),
      askAs(KEY_A, KNOWN[2]),
      askAs(KEY_B, KNOWN[3]),
    ]);

    const a = [a1, a2, a3];
    expect(a.filter(({ body }) => body.source === 'llm')).toHaveLength(1);
    const overloaded = a.filter(({ body }) => body.fallbackReason === 'overloaded');
    expect(overloaded).toHaveLength(2);
    for (const { status, body, ms } of overloaded) {
      expect(status).toBe(200);
      expect(body).toMatchObject({ source: 'excerpts', degraded: true, retryAfterSeconds: 1 });
      expect(ms).toBeLessThan(1500);
    }
    // The other caller is not touched.
    expect(b1.body).toMatchObject({ source: 'llm', degraded: false });
    expect(upstream.calls).toBe(2);
    // Its place is back once its call ended: the caller's next question reaches the model.
    expect((await askAs(KEY_A, KNOWN[4])).body.source).toBe('llm');
    // Neither the breaker nor its bulkhead counted the refusals.
    const entry = (await getHealth(testApp.url, '/circuit-breaker')).body.details['huggingface'];
    expect(entry).toMatchObject({ state: 'closed', failures: 0, stats: { overloaded: 0, failures: 0 } });
  });

  it('gives a streamed answer its place until the stream ends', async () => {
    testApp = await startTestApp({ HF_ENDPOINT_URL: upstream.url, RATE_LIMIT_CONCURRENT: '1', CIRCUIT_BREAKER_TIMEOUT_SECONDS: '10' });
    upstream.setFault({ kind: 'slowTokens', tokenIntervalMs: 300 });
    const stream = fetch(`${testApp.url}/assistant/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: KNOWN[0] }),
    }).then((response) => response.text());
    await upstream.waitForTokens(1, 5000);
    // The same caller (this machine's address, no keys) while its stream is still going: overloaded.
    expect((await ask(testApp.url, { query: KNOWN[1] })).body).toMatchObject({ source: 'excerpts', fallbackReason: 'overloaded' });
    expect(await stream).toContain('event: done');
    expect((await ask(testApp.url, { query: KNOWN[2] })).body.source).toBe('llm');
  });
});

describe('a client that disconnects', () => {
  it('aborts its model call (the model sees its socket closed) and the call does not count', async () => {
    testApp = await startTestApp({
      HF_ENDPOINT_URL: upstream.url,
      CIRCUIT_BREAKER_TIMEOUT_SECONDS: '30',
      CIRCUIT_BREAKER_FAIL_THRESHOLD: '1',
    });
    upstream.setFault({ kind: 'hang' });
    const client = new AbortController();

    const gone = fetch(`${testApp.url}/assistant/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: KNOWN[0] }),
      signal: client.signal,
    }).catch((error: unknown) => error);
    await eventually(
      async () => upstream.inFlight,
      (n) => n === 1,
    );
    client.abort();
    await gone;

    // far sooner than the 30 s time-out: the app closed the socket to the model
    await upstream.waitForInFlight(0, 5000);
    const entry = (await getHealth(testApp.url, '/circuit-breaker')).body.details['huggingface'];
    expect(entry).toMatchObject({ state: 'closed', failures: 0, inFlight: 0, stats: { failures: 0, timeouts: 0, fallbacks: 0 } });
    // no answer was built for nobody, so none is counted as served
    const metrics = await (await fetch(`${testApp.url}/metrics`)).text();
    expect(metrics).not.toMatch(/^assistant_answers_total\{.*\} [1-9]/m);
    upstream.setFault({ kind: 'ok' });
    const next = await ask<AnswerBody>(testApp.url, { query: KNOWN[1] });
    expect(next.body.source).toBe('llm');
  });
});
