// RATE_LIMIT_PER_MINUTE across replicas sharing a real redis-server: one budget for the fleet, the sliding window on
// Redis' clock, and Redis outages (killed or hung): limits per replica, never a 500, shared again when Redis returns.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { type ThrottlerStorage, getStorageToken } from '@nestjs/throttler';
import { createClient } from 'redis';
import { RATE_LIMIT_KEY_PREFIX } from '../src/rate-limit/fleet-throttler.storage.js';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import { eventually } from './support/http.js';
import { type CapturedOutput, captureOutput } from './support/log-lines.js';
import { RedisTestServer } from './support/redis-server.js';
import { KNOWN_QUESTIONS as KNOWN, startTestApp, type TestApp } from './support/test-app.js';

const LIMIT = 4;
const HTTP_TIMEOUT_MS = 5000;
/** node-redis backs off up to 2 s between attempts; a reconnect shows within a few of them. */
const RECONNECT_DEADLINE_MS = 10_000;
const RATE_LIMIT = /^"default";r=(\d+);t=(\d+)$/;

interface Reply {
  status: number;
  remaining: number | undefined;
  body: Record<string, unknown>;
}

let redis: RedisTestServer;
let redisRunning = false;
let upstream: FakeHfUpstream;
const replicas: TestApp[] = [];
let output: CapturedOutput;
/** Each test's caller has a key of its own, so budgets spent by one test never reach the next (Redis outlives tests). */
let keyNumber = 0;
let key = '';

beforeAll(async () => {
  [redis, upstream] = await Promise.all([RedisTestServer.start(), FakeHfUpstream.start()]);
  redisRunning = true;
  output = captureOutput();
});

beforeEach(() => {
  keyNumber += 1;
  key = `fleet-key-${keyNumber}-0123456789`;
  output.clear();
});

afterEach(async () => {
  // An app closes cleanly only with Redis answering (see redis-cache.redis.e2e-spec.ts).
  if (!redisRunning) await startRedis();
  redis.resume();
  await Promise.all(replicas.splice(0).map((replica) => replica.close()));
});

afterAll(async () => {
  await redis?.stop();
  await upstream?.close();
  output?.restore();
});

async function startReplica(): Promise<TestApp> {
  const replica = await startTestApp({
    REDIS_URL: redis.url,
    HF_ENDPOINT_URL: upstream.url,
    ASSISTANT_API_KEYS: Array.from({ length: 20 }, (_, i) => `fleet-key-${i + 1}-0123456789`).join(','),
    RATE_LIMIT_PER_MINUTE: String(LIMIT),
    LOG_LEVEL: 'info',
  });
  replicas.push(replica);
  return replica;
}

async function startRedis(): Promise<void> {
  await redis.restart();
  redisRunning = true;
}

async function ask(replica: TestApp, question: string = KNOWN[0]): Promise<Reply> {
  const response = await fetch(`${replica.url}/assistant/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query: question }),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  const match = RATE_LIMIT.exec(response.headers.get('ratelimit') ?? '');
  return {
    status: response.status,
    remaining: match ? Number(match[1]) : undefined,
    body: (await response.json()) as Record<string, unknown>,
  };
}

/** Until the replica counts in Redis again: its next answer's remaining budget continues what Redis holds. */
async function sharedAgain(replica: TestApp): Promise<void> {
  await eventually(
    () => fetch(`${replica.url}/health`).then((response) => response.json() as Promise<{ details?: { cache?: { status?: string } } }>),
    (health) => health.details?.cache?.status === 'up',
    RECONNECT_DEADLINE_MS,
  );
}

describe('failed key checks across the fleet', () => {
  /** The app's budget: failed key checks a minute from one client address. */
  const BUDGET = 20;

  async function startProxiedReplica(): Promise<TestApp> {
    const replica = await startTestApp({
      REDIS_URL: redis.url,
      HF_ENDPOINT_URL: upstream.url,
      ASSISTANT_API_KEYS: key,
      // each X-Forwarded-For address stands for a client of its own
      TRUST_PROXY: 'true',
      LOG_LEVEL: 'info',
    });
    replicas.push(replica);
    return replica;
  }

  async function from(replica: TestApp, address: string, presented: string | undefined): Promise<number> {
    const response = await fetch(`${replica.url}/assistant/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': address, ...(presented ? { 'x-api-key': presented } : {}) },
      body: JSON.stringify({ query: KNOWN[0] }),
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    await response.arrayBuffer();
    return response.status;
  }

  it('are counted together: past the budget spent on both replicas, each refuses the address with 429, a right key included', async () => {
    const [first, second] = [await startProxiedReplica(), await startProxiedReplica()];
    const address = `198.51.100.${keyNumber}`;
    const statuses: number[] = [];
    for (let i = 0; i < BUDGET; i++) statuses.push(await from(i % 2 === 0 ? first : second, address, `guess-${i}`));
    expect(statuses).toEqual(Array<number>(BUDGET).fill(401));

    // the second replica counted the failure that spent the budget: it refuses without looking at the key
    expect(await from(second, address, key)).toBe(429);
    // the first learns it from Redis with its next failure, and refuses from then on
    expect(await from(first, address, 'one-more-guess')).toBe(429);
    expect(await from(first, address, key)).toBe(429);
    // another address is not affected
    expect(await from(first, '203.0.113.50', key)).toBe(200);

    const client = createClient({ url: redis.url });
    await client.connect();
    try {
      expect(await client.zCard(`${RATE_LIMIT_KEY_PREFIX}key-checks:address:${address}`)).toBe(BUDGET);
    } finally {
      await client.quit();
    }
  });
});

describe('one budget for the fleet', () => {
  it('a key’s requests to any replica count against the same budget; the one over it is refused wherever it lands', async () => {
    const [first, second] = [await startReplica(), await startReplica()];
    const replies = [await ask(first), await ask(second), await ask(first), await ask(second)];
    expect(replies.map((reply) => [reply.status, reply.remaining])).toEqual([
      [200, 3],
      [200, 2],
      [200, 1],
      [200, 0],
    ]);
    expect((await ask(first)).status).toBe(429);
    expect((await ask(second)).status).toBe(429);
  });

  it('keeps each counter in Redis under its prefix, expiring within the 60 s window', async () => {
    const replica = await startReplica();
    await ask(replica);
    const client = createClient({ url: redis.url });
    await client.connect();
    try {
      const keys = await client.keys(`${RATE_LIMIT_KEY_PREFIX}*`);
      expect(keys.length).toBeGreaterThan(0);
      for (const counter of keys) {
        const ttl = await client.pTTL(counter);
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(60_000);
      }
    } finally {
      await client.quit();
    }
  });
});

describe('the window slides, on Redis’ clock', () => {
  it('admits again once the oldest hits leave the window, and a refused request is not counted', async () => {
    // The storage itself, with a 600 ms window: the 60 s the app uses would make this test a minute long.
    const storage = (await startReplica()).app.get<ThrottlerStorage>(getStorageToken());
    const counter = `window-${keyNumber}`;
    const hit = () => storage.increment(counter, 600, 2, 0, 'default');

    expect((await hit()).isBlocked).toBe(false);
    expect((await hit()).isBlocked).toBe(false);
    const refused = await hit();
    expect(refused).toMatchObject({ isBlocked: true, totalHits: 3, timeToBlockExpire: 1 });
    // Refusals while over the limit are not counted (the window still holds the 2 admitted hits), so they do not
    // push recovery back.
    for (let i = 0; i < 5; i++) expect(await hit()).toMatchObject({ isBlocked: true, totalHits: 3 });

    const admitted = await eventually(hit, (record) => !record.isBlocked, 3000);
    expect(admitted.totalHits).toBeLessThanOrEqual(2);
  });
});

describe('Redis unavailable', () => {
  it('killed: every replica limits on its own (never a 500, never unlimited), and counts in Redis again once it is back', async () => {
    const [first, second] = [await startReplica(), await startReplica()];
    expect((await ask(first)).remaining).toBe(LIMIT - 1);
    await redis.kill();
    redisRunning = false;

    for (const replica of [first, second]) {
      const statuses: number[] = [];
      for (let i = 0; i <= LIMIT; i++) statuses.push((await ask(replica, KNOWN[i % KNOWN.length])).status);
      // Each replica's own budget: LIMIT answers, then 429.
      expect(statuses).toEqual([...Array<number>(LIMIT).fill(200), 429]);
    }
    expect(output.text()).toContain('Rate limits are counted by this replica alone');

    await startRedis();
    await Promise.all([sharedAgain(first), sharedAgain(second)]);
    // A key the outage never saw: its budget is the fleet's again.
    keyNumber += 1;
    key = `fleet-key-${keyNumber}-0123456789`;
    expect([(await ask(first)).remaining, (await ask(second)).remaining, (await ask(first)).remaining]).toEqual([3, 2, 1]);
    expect(output.text()).toContain('Rate limits are counted across the fleet in Redis again');
  });

  it('hung (no answer, connection open): requests are still answered within seconds, counted by the replica', async () => {
    const replica = await startReplica();
    expect((await ask(replica)).status).toBe(200);
    redis.pause();
    const started = performance.now();
    const reply = await ask(replica, KNOWN[1]);
    expect(reply.status).toBe(200);
    expect(reply.remaining).toBeDefined();
    expect(performance.now() - started).toBeLessThan(3000);
  });
});
