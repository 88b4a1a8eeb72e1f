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
