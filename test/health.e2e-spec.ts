// The health routes over real HTTP: Terminus bodies {status, info, error, details}, as probes and dashboards see them.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { ApplicationReadiness } from '../src/health/application-readiness.js';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import {
  type AnswerBody,
  ask,
  breakerEntry,
  getHealth,
  type HealthBody,
  type UnavailableBody,
  waitForBreakerState,
} from './support/http.js';
import {
  FAIL_THRESHOLD as THRESHOLD,
  KNOWN_QUESTIONS as KNOWN,
  NONSENSE_QUESTIONS as NONSENSE,
  openCircuit,
  startTestApp,
  type TestApp,
} from './support/test-app.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function expectTerminusBody(body: HealthBody, status: 'ok' | 'error'): void {
  expect(Object.keys(body).sort()).toEqual(['details', 'error', 'info', 'status']);
  expect(body.status).toBe(status);
}

describe('health routes with the model configured', () => {
  // A long reset keeps an opened circuit open for the whole test.
  let upstream: FakeHfUpstream;
  let testApp: TestApp;
  beforeAll(async () => {
    upstream = await FakeHfUpstream.start();
  });
  afterAll(() => upstream.close());
  beforeEach(async () => {
    upstream.reset();
    testApp = await startTestApp({ HF_ENDPOINT_URL: upstream.url, CIRCUIT_BREAKER_RESET_TIMEOUT: '30' });
  });
  afterEach(() => testApp.close());

  it('answers 200 on every route when everything is well', async () => {
    const [live, ready, breaker, all] = await Promise.all([
      getHealth(testApp.url, '/live'),
      getHealth(testApp.url, '/ready'),
      getHealth(testApp.url, '/circuit-breaker'),
      getHealth(testApp.url, ''),
    ]);

    expect([live.status, ready.status, breaker.status, all.status]).toEqual([200, 200, 200, 200]);
    for (const { body } of [live, ready, breaker, all]) expectTerminusBody(body, 'ok');
    expect(live.body.details).toEqual({});
    expect(ready.body.info['readiness']).toMatchObject({ status: 'up' });
    expect(breaker.body.info['huggingface']).toMatchObject({ status: 'up', state: 'closed', failures: 0 });
    expect(all.body.info).toMatchObject({
      huggingface: { status: 'up', state: 'closed' },
      cache: { status: 'up', store: 'memory' },
      upstream: { status: 'up', configured: true },
    });
    expect(all.body.error).toEqual({});
  });

  it('keeps /health/live and /health/ready at 200 while the circuit is open, since the fallbacks serve', async () => {
    await openCircuit(testApp.url, upstream);

    const live = await getHealth(testApp.url, '/live');
    const ready = await getHealth(testApp.url, '/ready');

    expect(live.status).toBe(200);
    expect(ready.status).toBe(200);
    expectTerminusBody(ready.body, 'ok');
    expect((await ask(testApp.url, { query: KNOWN[0] })).body).toMatchObject({ source: 'excerpts', fallbackReason: 'circuit_open' });
  });

  it('answers 503 on /health/circuit-breaker while the circuit is open, with the state, the times and counts of what happened', async () => {
    upstream.setFault({ kind: 'ok' });
    expect((await ask(testApp.url, { query: KNOWN[0] })).body.source).toBe('llm');
    // three failures in a row, one of them a time-out; each served from the excerpts
    upstream.setFault({ kind: 'sequence', faults: [{ kind: 'error500' }, { kind: 'hang' }, { kind: 'error500' }] });
    const failed: AnswerBody[] = [];
    for (const query of KNOWN.slice(1, 4)) failed.push((await ask(testApp.url, { query })).body);
    expect(failed.map((answer) => answer.fallbackReason)).toEqual(['upstream_error', 'timeout', 'upstream_error']);
    // open: two questions answered from the excerpts, one with nothing to fall back on, one fresh from the cache
    expect((await ask(testApp.url, { query: KNOWN[4] })).body.fallbackReason).toBe('circuit_open');
    expect((await ask(testApp.url, { query: KNOWN[5] })).body.fallbackReason).toBe('circuit_open');
    expect((await ask(testApp.url, { query: NONSENSE[3] })).status).toBe(503);
    expect((await ask(testApp.url, { query: KNOWN[0] })).body.source).toBe('cache');

    const { status, body } = await getHealth(testApp.url, '/circuit-breaker');

    expect(status).toBe(503);
    expectTerminusBody(body, 'error');
    const entry = breakerEntry(body, 'huggingface');
    expect(body.error['huggingface']).toEqual(body.details['huggingface']);
    expect(entry).toMatchObject({
      status: 'down',
      state: 'open',
      failures: THRESHOLD,
      openedAt: expect.stringMatching(ISO),
      nextAttemptAt: expect.stringMatching(ISO),
      stats: { successes: 1, failures: 3, timeouts: 1, rejects: 3, fallbacks: 5 },
    });
    expect(Date.parse(entry?.nextAttemptAt ?? '') - Date.parse(entry?.openedAt ?? '')).toBe(30_000);
  });

  it('answers 503 on /health while the circuit is open', async () => {
    await openCircuit(testApp.url, upstream);

    const { status, body } = await getHealth(testApp.url, '');

    expect(status).toBe(503);
    expectTerminusBody(body, 'error');
    expect(body.error['huggingface']).toMatchObject({ status: 'down', state: 'open' });
    expect(body.info).toMatchObject({ cache: { status: 'up' }, upstream: { status: 'up' } });
  });
});

describe('health routes while the circuit recovers', () => {
  let upstream: FakeHfUpstream;
  let testApp: TestApp;
  beforeAll(async () => {
    upstream = await FakeHfUpstream.start();
    testApp = await startTestApp({ HF_ENDPOINT_URL: upstream.url, CIRCUIT_BREAKER_RESET_TIMEOUT: '0.5' });
  });
  afterAll(async () => {
    await testApp.close();
    await upstream.close();
  });

  it('reports the breaker up while half-open, and 200 everywhere again once the trial call closes it', async () => {
    await openCircuit(testApp.url, upstream);
    upstream.setFault({ kind: 'ok' });

    const halfOpen = await waitForBreakerState(testApp.url, 'huggingface', 'half_open');
    const duringTrialWait = await getHealth(testApp.url, '/circuit-breaker');
    expect(halfOpen).toMatchObject({ status: 'up', state: 'half_open' });
    expect(duringTrialWait.status).toBe(200);
    expectTerminusBody(duringTrialWait.body, 'ok');

    expect((await ask(testApp.url, { query: KNOWN[0] })).body).toMatchObject({ source: 'llm', circuit: { state: 'closed' } });
    const breaker = await getHealth(testApp.url, '/circuit-breaker');
    const all = await getHealth(testApp.url, '');

    expect(breaker.status).toBe(200);
    expect(breakerEntry(breaker.body, 'huggingface')).toMatchObject({ status: 'up', state: 'closed', failures: 0 });
    expect(breakerEntry(breaker.body, 'huggingface')).not.toHaveProperty('openedAt');
    expect(breakerEntry(breaker.body, 'huggingface')).not.toHaveProperty('nextAttemptAt');
    expect(all.status).toBe(200);
  });
});

describe('health routes with no model configured', () => {
  let testApp: TestApp;
  beforeAll(async () => {
    testApp = await startTestApp({ HF_TOKEN: '', HF_ENDPOINT_URL: '' });
  });
  afterAll(() => testApp.close());

  it('answers 503 on /health naming the upstream when neither HF_TOKEN nor HF_ENDPOINT_URL is set', async () => {
    const { status, body } = await getHealth(testApp.url, '');

    expect(status).toBe(503);
    expectTerminusBody(body, 'error');
    expect(body.error['upstream']).toMatchObject({ status: 'down', configured: false });
    expect(Object.keys(body.error)).toEqual(['upstream']);
  });

  it('keeps /health/live and /health/ready at 200, since the excerpts still serve', async () => {
    expect((await getHealth(testApp.url, '/live')).status).toBe(200);
    expect((await getHealth(testApp.url, '/ready')).status).toBe(200);
    expect((await ask(testApp.url, { query: KNOWN[0] })).status).toBe(200);
  });
});

describe('health routes with CIRCUIT_BREAKER_NAME=tgi', () => {
  let upstream: FakeHfUpstream;
  let testApp: TestApp;
  beforeAll(async () => {
    upstream = await FakeHfUpstream.start();
    testApp = await startTestApp({ HF_ENDPOINT_URL: upstream.url, CIRCUIT_BREAKER_NAME: 'tgi', CIRCUIT_BREAKER_RESET_TIMEOUT: '30' });
  });
  afterAll(async () => {
    await testApp.close();
    await upstream.close();
  });

  it('keys the breaker entry and names the circuit in answers "tgi"', async () => {
    const answer = await ask(testApp.url, { query: KNOWN[0] });
    const breaker = await getHealth(testApp.url, '/circuit-breaker');

    expect(answer.body.circuit).toEqual({ name: 'tgi', state: 'closed' });
    expect(Object.keys(breaker.body.details)).toEqual(['tgi']);
    expect(breakerEntry(breaker.body, 'tgi')).toMatchObject({ status: 'up', state: 'closed' });
  });

  it('reports the open "tgi" breaker on /health/circuit-breaker, /health and in 503s', async () => {
    await openCircuit(testApp.url, upstream);

    const breaker = await getHealth(testApp.url, '/circuit-breaker');
    const all = await getHealth(testApp.url, '');
    const unavailable = await ask<UnavailableBody>(testApp.url, { query: NONSENSE[3] });

    expect(breaker.status).toBe(503);
    expect(breaker.body.error['tgi']).toMatchObject({ status: 'down', state: 'open' });
    expect(all.status).toBe(503);
    expect(all.body.error).toHaveProperty('tgi');
    expect(all.body.details).not.toHaveProperty('huggingface');
    expect(unavailable.body.circuit).toEqual({ name: 'tgi', state: 'open' });
  });
});

describe('health routes while draining after a shutdown signal', () => {
  // main.ts calls beginDraining() on SIGTERM; process.e2e-spec sends the real signal to a real process.
  let testApp: TestApp;
  beforeAll(async () => {
    testApp = await startTestApp();
  });
  afterAll(() => testApp.close());

  it('answers 503 on /health/ready with the phase, keeps /health/live and answers at 200, and closes each connection', async () => {
    const before = await getHealth(testApp.url, '/ready');
    expect(before.status).toBe(200);
    expect(before.headers.get('connection')).not.toBe('close');

    testApp.app.get(ApplicationReadiness).beginDraining();

    const [ready, live, answer] = await Promise.all([
      getHealth(testApp.url, '/ready'),
      getHealth(testApp.url, '/live'),
      ask(testApp.url, { query: KNOWN[0] }),
    ]);
    expect(ready.status).toBe(503);
    expectTerminusBody(ready.body, 'error');
    expect(ready.body.error['readiness']).toEqual({ status: 'down', phase: 'draining' });
    expect(live.status).toBe(200);
    expect(answer.status).toBe(200);
    for (const { headers } of [ready, live, answer]) expect(headers.get('connection')).toBe('close');
  });
});
