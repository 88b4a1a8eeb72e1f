// Coalescing across the fleet (the contract's Coalescing, with REDIS_URL): replicas of the real app on one real
// redis-server and one fake upstream share one model call per question through a lease in Redis; a replica killed
// while it holds the lease (real app processes) costs the others a wait of the lease's life, then one asks itself;
// Redis unreachable leaves coalescing on each replica alone, never a 500.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import type { ConfigType } from '@nestjs/config';
import { type AppProcess, killAppProcesses, startAppProcess } from './support/app-process.js';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import type { AnswerBody } from './support/http.js';
import { freePort, RedisTestServer } from './support/redis-server.js';
import { KNOWN_QUESTIONS, startTestApp, type TestApp } from './support/test-app.js';
import type { cacheConfig } from '../src/config/cache.config.js';
import { FleetLeases } from '../src/coalescing/fleet-leases.js';
import { RedisConnection } from '../src/redis/redis-connection.js';
import { RedisSubscriber } from '../src/redis/redis-subscriber.js';

const MODEL = 'test-org/fleet-coalescing-model';
/** How long the fake takes to answer: every request of a test arrives while the first call is in flight. */
const LATENCY_MS = 2000;
const HTTP_TIMEOUT_MS = 20_000;
const FLEET_ENV = {
  HF_MODEL: MODEL,
  CIRCUIT_BREAKER_TIMEOUT_SECONDS: '10',
  ASSISTANT_DEADLINE_SECONDS: '10',
  CIRCUIT_BREAKER_FAIL_THRESHOLD: '5',
  CIRCUIT_BREAKER_MAX_CONCURRENT: '100',
  ASSISTANT_COALESCE: 'true',
  CACHE_COALESCE_WAIT_SECONDS: '10',
};

type Answer = AnswerBody & { model?: string; coalesced?: boolean };

let redis: RedisTestServer;
let upstream: FakeHfUpstream;
let questionNumber = 0;

function freshQuestion(): string {
  questionNumber += 1;
  return `${KNOWN_QUESTIONS[questionNumber % KNOWN_QUESTIONS.length]} (fleet question ${questionNumber})`;
}

async function ask(url: string, query: string, accept = 'application/json'): Promise<{ status: number; body: Answer; text: string }> {
  const response = await fetch(`${url}/assistant/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept },
    body: JSON.stringify({ query }),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  const text = await response.text();
  return { status: response.status, body: (accept === 'application/json' ? JSON.parse(text) : {}) as Answer, text };
}

async function metric(url: string, line: RegExp): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(line.exec(text)?.[1] ?? 0);
}
const FLEET_COALESCED = /^assistant_coalesced_requests_total\{scope="fleet"\} (\d+)$/m;
const WAIT_TIMEOUTS = /^assistant_coalesce_wait_timeouts_total (\d+)$/m;

beforeAll(async () => {
  [redis, upstream] = await Promise.all([RedisTestServer.start(), FakeHfUpstream.start()]);
});

beforeEach(async () => {
  upstream.reset();
  await redis.flushAll();
});

afterAll(async () => {
  await killAppProcesses();
  await upstream.close();
  await redis.stop();
});

describe('three replicas on one Redis', () => {
  const replicas: TestApp[] = [];

  beforeAll(async () => {
    for (let i = 0; i < 3; i++) replicas.push(await startTestApp({ ...FLEET_ENV, REDIS_URL: redis.url, HF_ENDPOINT_URL: upstream.url }));
  });

  afterAll(async () => {
    await Promise.all(replicas.map((replica) => replica.close()));
  });

  it('answers 30 identical questions spread over the replicas with 1 model call; the other replicas wait for it', async () => {
    upstream.setFault({ kind: 'ok', latencyMs: LATENCY_MS, answer: 'One call for the whole fleet.' });
    const query = freshQuestion();
    const before = await Promise.all(replicas.map((replica) => metric(replica.url, FLEET_COALESCED)));

    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => ask(replicas[i % 3].url, query)));

    expect(upstream.callsFor(MODEL)).toBe(1);
    expect(answers.map((answer) => answer.status)).toEqual(Array.from({ length: 30 }, () => 200));
    const bodies = answers.map((answer) => answer.body);
    for (const body of bodies)
      expect(body).toMatchObject({ source: 'llm', degraded: false, model: MODEL, answer: 'One call for the whole fleet.' });
    expect(bodies.filter((body) => body.coalesced === undefined)).toHaveLength(1);
    const after = await Promise.all(replicas.map((replica) => metric(replica.url, FLEET_COALESCED)));
    // The two replicas that did not ask each waited once (their other requests followed that wait, on the replica).
    expect(after.map((count, i) => count - before[i]).sort()).toEqual([0, 1, 1]);
  });

  it("streams another replica's answer to a waiting replica's client as excerpts, one token and done", async () => {
    upstream.setFault({ kind: 'ok', latencyMs: LATENCY_MS, answer: 'Streamed from the cache of the fleet.' });
    const query = freshQuestion();
    const leader = ask(replicas[0].url, query);
    await upstream.waitForCalls(1, HTTP_TIMEOUT_MS);
    const streamed = await ask(replicas[1].url, query, 'text/event-stream');
    expect((await leader).body.coalesced).toBeUndefined();
    const events = [...streamed.text.matchAll(/^event: (\w+)$/gm)].map((match) => match[1]);
    expect(events).toEqual(['excerpts', 'token', 'done']);
    expect(streamed.text).toContain('"coalesced":true');
    expect(upstream.callsFor(MODEL)).toBe(1);
  });

  it("gives a failing holder's waiters on the other replicas the fallbacks at once, with 1 model call", async () => {
    upstream.setFault({ kind: 'error500', latencyMs: LATENCY_MS });
    const query = freshQuestion();
    const started = performance.now();
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => ask(replicas[i % 3].url, query)));
    expect(upstream.callsFor(MODEL)).toBe(1);
    for (const { body } of answers) expect(body).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'upstream_error' });
    // At once: nobody waited out CACHE_COALESCE_WAIT_SECONDS (10 s).
    expect(performance.now() - started).toBeLessThan(8000);
  });

  it("gives the holder's waiters the 503 at once when nothing is left to fall back on, with 1 model call", async () => {
    upstream.setFault({ kind: 'error500', latencyMs: LATENCY_MS });
    const query = `zqxj vvkw fleet ${freshQuestion().length}`;
    const started = performance.now();
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => ask(replicas[i % 3].url, query)));
    expect(answers.map((answer) => answer.status)).toEqual(Array.from({ length: 6 }, () => 503));
    expect(upstream.callsFor(MODEL)).toBe(1);
    expect(performance.now() - started).toBeLessThan(8000);
  });

  it('asks the model itself once its wait for another replica runs out (CACHE_COALESCE_WAIT_SECONDS)', async () => {
    const patient = await startTestApp({
      ...FLEET_ENV,
      REDIS_URL: redis.url,
      HF_ENDPOINT_URL: upstream.url,
      CACHE_COALESCE_WAIT_SECONDS: '1',
    });
    try {
      upstream.setFault({ kind: 'ok', latencyMs: 5000, answer: 'Slow, but it comes.' });
      const query = freshQuestion();
      const holder = ask(replicas[0].url, query);
      await upstream.waitForCalls(1, HTTP_TIMEOUT_MS);
      const before = await metric(patient.url, WAIT_TIMEOUTS);
      const own = await ask(patient.url, query);
      expect(own.body).toMatchObject({ source: 'llm', answer: 'Slow, but it comes.' });
      expect(own.body.coalesced).toBeUndefined();
      expect(upstream.callsFor(MODEL)).toBe(2);
      expect((await metric(patient.url, WAIT_TIMEOUTS)) - before).toBe(1);
      await holder;
    } finally {
      await patient.close();
    }
  });
});

describe('the lease itself, on a real Redis', () => {
  let connection: RedisConnection;
  let subscriber: RedisSubscriber;
  let leases: FleetLeases;

  beforeAll(async () => {
    const config: ConfigType<typeof cacheConfig> = { redisUrl: redis.url, freshTtlMs: 60_000, staleTtlMs: 3_600_000, coalesceWaitMs: 5000 };
    connection = new RedisConnection(config);
    await connection.onModuleInit();
    subscriber = new RedisSubscriber(connection);
    leases = new FleetLeases(connection, subscriber, config);
  });

  afterAll(async () => {
    await subscriber.onApplicationShutdown();
    await connection.onApplicationShutdown();
  });

  it('gives a lease to one claimant; a release after it expired and was taken again leaves the new owner its lease', async () => {
    const first = await leases.claim('q-expiry', 300);
    expect(first.kind).toBe('owner');
    expect(await leases.claim('q-expiry', 300)).toMatchObject({ kind: 'held' });
    await new Promise((resolve) => setTimeout(resolve, 600));
    const second = await leases.claim('q-expiry', 10_000);
    expect(second.kind).toBe('owner');
    if (first.kind === 'owner') await first.lease.release({ kind: 'abandoned' });
    // The first owner's token no longer owns it: the second's lease is still there.
    expect(await leases.claim('q-expiry', 300)).toMatchObject({ kind: 'held' });
    if (second.kind === 'owner') await second.lease.release({ kind: 'abandoned' });
    expect((await leases.claim('q-expiry', 300)).kind).toBe('owner');
  });

  it('wakes a waiter when the owner publishes, and uses one subscription per question however many wait', async () => {
    const owner = await leases.claim('q-wake', 10_000);
    const held = await leases.claim('q-wake', 10_000);
    expect(held.kind).toBe('held');
    const cache: { answer?: string } = {};
    const controller = new AbortController();
    const waits = Array.from({ length: 3 }, () =>
      leases.wait(
        'q-wake',
        10_000,
        () => Promise.resolve(cache.answer),
        controller.signal,
        () => undefined,
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(subscriber.size).toBe(1);
    cache.answer = 'cached by the owner';
    const woken = performance.now();
    if (owner.kind === 'owner') await owner.lease.release({ kind: 'answered' });
    expect(await Promise.all(waits)).toEqual(Array.from({ length: 3 }, () => ({ kind: 'answered', value: 'cached by the owner' })));
    expect(performance.now() - woken).toBeLessThan(2000);
    expect(subscriber.size).toBe(0);
  });
});

describe('a replica killed while it holds the lease (real app processes)', () => {
  const processes: AppProcess[] = [];

  afterEach(async () => {
    await Promise.all(processes.splice(0).map((app) => app.kill('SIGKILL')));
  });

  it("lets another replica ask once the dead holder's lease expires, long before CACHE_COALESCE_WAIT_SECONDS", async () => {
    // A lease lives ASSISTANT_DEADLINE_SECONDS + 1 s = 3 s; the wait could last 30 s.
    const env = {
      ...FLEET_ENV,
      REDIS_URL: redis.url,
      HF_ENDPOINT_URL: upstream.url,
      ASSISTANT_DEADLINE_SECONDS: '2',
      CIRCUIT_BREAKER_TIMEOUT_SECONDS: '2',
      CACHE_COALESCE_WAIT_SECONDS: '30',
      LOG_LEVEL: 'silent',
    };
    const [holder, survivor] = await Promise.all([
      startAppProcess(env, { output: 'discard' }),
      startAppProcess(env, { output: 'discard' }),
    ]);
    processes.push(holder, survivor);
    upstream.setFault({ kind: 'hang' });
    const query = freshQuestion();
    void ask(holder.url, query).catch(() => undefined);
    await upstream.waitForCalls(1, HTTP_TIMEOUT_MS);
    const asked = performance.now();
    const waiting = ask(survivor.url, query);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await holder.kill('SIGKILL');
    upstream.setFault({ kind: 'ok', answer: 'Asked again after the lease expired.' });

    const answer = await waiting;
    const waitedMs = performance.now() - asked;
    expect(answer.body).toMatchObject({ source: 'llm', degraded: false, answer: 'Asked again after the lease expired.' });
    expect(upstream.callsFor(MODEL)).toBe(2);
    // It waited for the lease (about 3 s from the holder's claim), not the 30 s its wait allowed.
    expect(waitedMs).toBeGreaterThan(1000);
    expect(waitedMs).toBeLessThan(15_000);
    expect(await metric(survivor.url, WAIT_TIMEOUTS)).toBe(1);
  });
});

describe('Redis unreachable', () => {
  it('coalesces on the replica alone: 20 identical questions, 1 model call, no 500', async () => {
    const app = await startTestApp({ ...FLEET_ENV, REDIS_URL: `redis://127.0.0.1:${await freePort()}`, HF_ENDPOINT_URL: upstream.url });
    try {
      upstream.setFault({ kind: 'ok', latencyMs: LATENCY_MS, answer: 'Without Redis, still one call.' });
      const query = freshQuestion();
      const answers = await Promise.all(Array.from({ length: 20 }, () => ask(app.url, query)));
      expect(answers.map((answer) => answer.status)).toEqual(Array.from({ length: 20 }, () => 200));
      expect(answers.filter((answer) => answer.body.coalesced === true)).toHaveLength(19);
      expect(upstream.callsFor(MODEL)).toBe(1);
    } finally {
      await app.close();
    }
  });
});

describe('the subscribed connection with Redis gone', () => {
  it('refuses a subscription while Redis is down, leaving no channel behind, and subscribes again once it is back', async () => {
    const config: ConfigType<typeof cacheConfig> = { redisUrl: redis.url, freshTtlMs: 60_000, staleTtlMs: 3_600_000, coalesceWaitMs: 5000 };
    const connection = new RedisConnection(config);
    await connection.onModuleInit();
    const subscriber = new RedisSubscriber(connection);
    try {
      const unsubscribe = await subscriber.subscribe('q-before', () => undefined);
      unsubscribe();
      await redis.kill();
      await expect(subscriber.subscribe('q-down', () => undefined)).rejects.toThrow();
      expect(subscriber.size).toBe(0);
      await redis.restart();
      const again = await eventually(() => subscriber.subscribe('q-back', () => undefined).catch(() => undefined));
      expect(subscriber.size).toBe(1);
      again();
      expect(subscriber.size).toBe(0);
    } finally {
      await subscriber.onApplicationShutdown();
      await connection.onApplicationShutdown();
    }
  });
});

/** The first value `probe` gives that is not undefined, within 10 s (node-redis reconnects with its back-off). */
async function eventually<T>(probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('still nothing after 10 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
