// Two replicas of the real HTTP app on one real redis-server share one circuit (CIRCUIT_BREAKER_SHARED, the
// default with REDIS_URL): what an operator sees in health, metrics and logs, and what callers get.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import { type AnswerBody, ask, breakerEntry, type BreakerEntry, eventually, getHealth } from './support/http.js';
import { type CapturedOutput, captureOutput, logEntries, transitionsIn } from './support/log-lines.js';
import { RedisTestServer } from './support/redis-server.js';
import { startTestApp, type TestApp } from './support/test-app.js';

const BREAKER = 'huggingface';
/** Threshold 3, time-out 0.5 s; a reset period long enough that no trial happens inside a test unless it waits. */
const FLEET_ENV = { CIRCUIT_BREAKER_FAIL_THRESHOLD: '3', CIRCUIT_BREAKER_RESET_TIMEOUT: '3', LOG_LEVEL: 'info' };

let redis: RedisTestServer;
let upstream: FakeHfUpstream;
let output: CapturedOutput;
const apps: TestApp[] = [];
let nextQuestion = 0;

/** A question with excerpts in the shipped knowledge base that no earlier request asked (no cache hit). */
const question = () => ({ query: `what does half-open mean for a fleet of replicas (question ${++nextQuestion})` });

async function replica(env: Record<string, string> = {}): Promise<TestApp> {
  const app = await startTestApp({ REDIS_URL: redis.url, HF_ENDPOINT_URL: upstream.url, ...FLEET_ENV, ...env });
  apps.push(app);
  return app;
}

async function breaker(app: TestApp): Promise<BreakerEntry & { scope?: string }> {
  const health = await getHealth(app.url, '/circuit-breaker');
  return breakerEntry(health.body, BREAKER) as BreakerEntry & { scope?: string };
}

async function scopeGauge(app: TestApp): Promise<Record<string, number>> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const values: Record<string, number> = {};
  for (const match of text.matchAll(/^assistant_circuit_breaker_scope\{breaker="huggingface",scope="(\w+)"\} (\d+)$/gm)) {
    values[match[1]] = Number(match[2]);
  }
  return values;
}

beforeAll(async () => {
  [redis, upstream] = await Promise.all([RedisTestServer.start(), FakeHfUpstream.start()]);
  output = captureOutput();
});

beforeEach(async () => {
  upstream.reset();
  await redis.flushAll();
  output.clear();
});

afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

afterAll(async () => {
  output.restore();
  await redis.stop();
  await upstream.close();
});

describe('one circuit for the fleet', () => {
  it('is what health and metrics show: scope "fleet" on every replica sharing Redis', async () => {
    const [a, b] = [await replica(), await replica()];
    for (const app of [a, b]) {
      expect(await breaker(app)).toMatchObject({ state: 'closed', scope: 'fleet', failures: 0 });
      expect(await scopeGauge(app)).toEqual({ fleet: 1, replica: 0 });
    }
  });

  it('is opened by failures on one replica and obeyed by the other within a second, which then calls the model no more', async () => {
    const [a, b] = [await replica(), await replica()];
    upstream.setFault({ kind: 'error500' });
    for (let i = 0; i < 3; i++) expect((await ask<AnswerBody>(a.url, question())).body.source).toBe('excerpts');
    expect(upstream.calls).toBe(3);

    const started = Date.now();
    const seen = await eventually(
      () => breaker(b),
      (entry) => entry.state === 'open',
      1000,
    );
    expect(Date.now() - started).toBeLessThan(1000);
    expect(seen).toMatchObject({ scope: 'fleet', failures: 3 });
    const refused = await ask<AnswerBody>(b.url, question());
    expect(refused.body).toMatchObject({ source: 'excerpts', fallbackReason: 'circuit_open', circuit: { state: 'open' } });
    expect(upstream.calls).toBe(3);
    // Logged once, at info, by the replica that opened it (the other observed it at debug, below this level).
    expect(transitionsIn(logEntries(output.text()))).toEqual([{ breaker: BREAKER, from: 'closed', to: 'open' }]);
  });

  it('counts failures in a row across replicas: two on one and one on the other open it', async () => {
    const [a, b] = [await replica(), await replica()];
    upstream.setFault({ kind: 'error500' });
    await ask(a.url, question());
    await ask(b.url, question());
    expect(await breaker(a)).toMatchObject({ state: 'closed', failures: 2 });
    await ask(a.url, question());
    expect(await breaker(a)).toMatchObject({ state: 'open', failures: 3 });
    expect(
      (
        await eventually(
          () => breaker(b),
          (entry) => entry.state === 'open',
          1000,
        )
      ).failures,
    ).toBe(3);
  });

  it('forgets a run of failures on a success from any replica', async () => {
    const [a, b] = [await replica(), await replica()];
    upstream.setFault({ kind: 'error500' });
    await ask(a.url, question());
    await ask(a.url, question());
    upstream.setFault({ kind: 'ok' });
    expect((await ask<AnswerBody>(b.url, question())).body.source).toBe('llm');
    expect(
      (
        await eventually(
          () => breaker(a),
          (entry) => entry.failures === 0,
          1000,
        )
      ).state,
    ).toBe('closed');
    upstream.setFault({ kind: 'error500' });
    await ask(a.url, question());
    await ask(a.url, question());
    expect(await breaker(a)).toMatchObject({ state: 'closed', failures: 2 });
  });

  it('is obeyed by a replica that starts while it is open: its first request is refused, with no model call', async () => {
    const a = await replica();
    upstream.setFault({ kind: 'error500' });
    for (let i = 0; i < 3; i++) await ask(a.url, question());
    const calls = upstream.calls;
    const late = await replica();
    expect(await breaker(late)).toMatchObject({ state: 'open', scope: 'fleet' });
    expect((await ask<AnswerBody>(late.url, question())).body).toMatchObject({ fallbackReason: 'circuit_open' });
    expect(upstream.calls).toBe(calls);
  });

  it('is each replica\'s own with CIRCUIT_BREAKER_SHARED=false, or without REDIS_URL: scope "replica"', async () => {
    const own = await replica({ CIRCUIT_BREAKER_SHARED: 'false' });
    const noRedis = await replica({ REDIS_URL: '' });
    const shared = await replica();
    upstream.setFault({ kind: 'error500' });
    for (let i = 0; i < 3; i++) await ask(own.url, question());
    expect(await breaker(own)).toMatchObject({ state: 'open', scope: 'replica' });
    expect(await scopeGauge(own)).toEqual({ fleet: 0, replica: 1 });
    expect(await breaker(noRedis)).toMatchObject({ state: 'closed', scope: 'replica' });
    // The shared replica never heard of own's circuit.
    expect(await breaker(shared)).toMatchObject({ state: 'closed', scope: 'fleet', failures: 0 });
  });

  it('never counts Redis trouble as a model failure: with Redis killed the model still answers, and the scope is "replica" until it is back', async () => {
    const a = await replica();
    await redis.kill();
    try {
      await eventually(
        () => breaker(a),
        (entry) => entry.scope === 'replica',
        3000,
      );
      for (let i = 0; i < 4; i++) expect((await ask<AnswerBody>(a.url, question())).body.source).toBe('llm');
      expect(await breaker(a)).toMatchObject({ state: 'closed', failures: 0 });
      expect(await scopeGauge(a)).toEqual({ fleet: 0, replica: 1 });
    } finally {
      await redis.restart();
    }
    await eventually(
      () => breaker(a),
      (entry) => entry.scope === 'fleet',
      8000,
    );
  });
});

describe('a replica with CIRCUIT_BREAKER_ENABLED=false in a fleet sharing a circuit', () => {
  it('is never refused while the fleet is open, counts nothing toward it, and never takes its trial', async () => {
    const reset = { CIRCUIT_BREAKER_RESET_TIMEOUT: '1' };
    const [on, off] = [await replica(reset), await replica({ ...reset, CIRCUIT_BREAKER_ENABLED: 'false' })];
    upstream.setFault({ kind: 'error500' });
    // Five failures on the disabled replica (threshold 3): the fleet's circuit has counted none of them.
    for (let i = 0; i < 5; i++) expect((await ask<AnswerBody>(off.url, question())).body.fallbackReason).toBe('upstream_error');
    expect(await breaker(on)).toMatchObject({ state: 'closed', failures: 0 });

    for (let i = 0; i < 3; i++) await ask(on.url, question());
    expect(await breaker(on)).toMatchObject({ state: 'open', failures: 3 });
    // Its health entry shows the fleet's state, with enabled false; its calls still reach the model.
    await eventually(
      () => breaker(off),
      (entry) => entry.state === 'open',
      1000,
    );
    expect(await breaker(off)).toMatchObject({ state: 'open', scope: 'fleet', enabled: false });
    const calls = upstream.calls;
    expect((await ask<AnswerBody>(off.url, question())).body.fallbackReason).toBe('upstream_error');
    expect(upstream.calls).toBe(calls + 1);

    // Past the reset period the disabled replica's calls take no trial: the enabled replica's next call is the trial.
    upstream.setFault({ kind: 'ok' });
    await eventually(
      () => breaker(on),
      (entry) => entry.state === 'half_open',
      3000,
    );
    expect((await ask<AnswerBody>(off.url, question())).body.source).toBe('llm');
    expect(await breaker(on)).toMatchObject({ state: 'half_open' });
    expect((await ask<AnswerBody>(on.url, question())).body.source).toBe('llm');
    expect(await breaker(on)).toMatchObject({ state: 'closed', failures: 0 });
  });
});

describe('the failure-rate policy across the fleet', () => {
  it('opens, for every replica, a circuit that sees every second call fail across three replicas, which never fail 3 in a row', async () => {
    const env = { CIRCUIT_BREAKER_FAILURE_RATE: '0.5', CIRCUIT_BREAKER_MIN_CALLS: '6', CIRCUIT_BREAKER_WINDOW_SECONDS: '60' };
    const fleet = [await replica(env), await replica(env), await replica(env)];
    upstream.setFault({ kind: 'flapping', every: 2 });
    for (let i = 0; i < 5; i++) await ask(fleet[i % 3].url, question());
    expect(await breaker(fleet[0])).toMatchObject({ state: 'closed' });
    // The sixth call fails: 3 failures of 6 calls in the window, never two in a row.
    await ask(fleet[5 % 3].url, question());
    expect(upstream.calls).toBe(6);
    for (const app of fleet)
      await eventually(
        () => breaker(app),
        (entry) => entry.state === 'open',
        1000,
      );
    expect((await ask<AnswerBody>(fleet[0].url, question())).body).toMatchObject({ fallbackReason: 'circuit_open' });
    expect(upstream.calls).toBe(6);
  });
});
