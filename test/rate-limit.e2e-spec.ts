// RATE_LIMIT_PER_MINUTE over real HTTP, one replica, no Redis: who is counted, what the headers say, what a refusal
// looks like. Sharing the count across replicas, and Redis outages, are in rate-limit.redis.e2e-spec.ts.
import { createHash } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import { KNOWN_QUESTIONS as KNOWN, startTestApp, type TestApp } from './support/test-app.js';

const LIMIT = 3;
const KEYS = ['key-one-0123456789', 'key-two-0123456789', 'key-three-012345678', 'key-four-0123456789'] as const;
const HASHED_KEY = 'key-hashed-0123456789';
const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex');
/** `RateLimit: "default";r=<remaining>;t=<seconds>` (IETF draft httpapi-ratelimit-headers, as the contract gives it). */
const RATE_LIMIT = /^"default";r=(\d+);t=(\d+)$/;

interface Reply {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

let upstream: FakeHfUpstream;
let testApp: TestApp | undefined;

beforeAll(async () => {
  upstream = await FakeHfUpstream.start();
});

afterEach(async () => {
  await testApp?.close();
  testApp = undefined;
});

afterAll(async () => {
  await upstream?.close();
});

async function start(env: Record<string, string>): Promise<string> {
  testApp = await startTestApp({ HF_ENDPOINT_URL: upstream.url, ...env });
  return testApp.url;
}

async function query(url: string, headers: Record<string, string> = {}, question: string = KNOWN[0]): Promise<Reply> {
  const response = await fetch(`${url}/assistant/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ query: question }),
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as Record<string, unknown> };
}

/** r and t of the RateLimit header; fails the test when the header is missing or malformed. */
function rateLimit(reply: Reply): { remaining: number; seconds: number } {
  const match = RATE_LIMIT.exec(reply.headers.get('ratelimit') ?? '');
  expect(match).not.toBeNull();
  return { remaining: Number(match?.[1]), seconds: Number(match?.[2]) };
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

describe('with API keys: a budget per key', () => {
  const keysEnv = { ASSISTANT_API_KEYS: `${KEYS.join(',')},sha256:${sha256Hex(HASHED_KEY)}`, RATE_LIMIT_PER_MINUTE: String(LIMIT) };

  it('answers under the limit carry RateLimit and RateLimit-Policy; the next request gets 429 with Retry-After and a JSON body, and no model call', async () => {
    const url = await start(keysEnv);
    const remaining: number[] = [];
    for (let i = 0; i < LIMIT; i++) {
      const reply = await query(url, bearer(KEYS[0]), KNOWN[i]);
      expect(reply.status).toBe(200);
      expect(reply.headers.get('ratelimit-policy')).toBe(`"default";q=${LIMIT};w=60`);
      const { remaining: left, seconds } = rateLimit(reply);
      expect(seconds).toBeGreaterThanOrEqual(1);
      expect(seconds).toBeLessThanOrEqual(60);
      remaining.push(left);
    }
    expect(remaining).toEqual([2, 1, 0]);

    const calls = upstream.calls;
    const refused = await query(url, bearer(KEYS[0]), KNOWN[LIMIT]);
    expect(refused.status).toBe(429);
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(refused.body).toEqual({
      statusCode: 429,
      error: 'Too Many Requests',
      message: expect.stringContaining(`${LIMIT} requests a minute`),
      retryAfterSeconds: retryAfter,
    });
    expect(rateLimit(refused)).toEqual({ remaining: 0, seconds: retryAfter });
    expect(refused.headers.get('ratelimit-policy')).toBe(`"default";q=${LIMIT};w=60`);
    expect(upstream.calls).toBe(calls);
  });

  it('counts a key the same whichever header carries it, and keeps other keys (plain or configured by sha256) apart', async () => {
    const url = await start(keysEnv);
    expect((await query(url, bearer(KEYS[1]))).status).toBe(200);
    expect((await query(url, { 'x-api-key': KEYS[1] })).status).toBe(200);
    expect((await query(url, { authorization: `bearer ${KEYS[1]}` })).status).toBe(200);
    expect((await query(url, { 'x-api-key': KEYS[1] })).status).toBe(429);

    const other = await query(url, bearer(KEYS[2]));
    expect(other.status).toBe(200);
    expect(rateLimit(other).remaining).toBe(LIMIT - 1);
    const hashed = await query(url, { 'x-api-key': HASHED_KEY });
    expect(hashed.status).toBe(200);
    expect(rateLimit(hashed).remaining).toBe(LIMIT - 1);
  });

  it('cache hits count: the same question asked again is answered from the cache and still spends the budget', async () => {
    const url = await start(keysEnv);
    const first = await query(url, bearer(KEYS[3]), KNOWN[5]);
    const second = await query(url, bearer(KEYS[3]), KNOWN[5]);
    expect(second.body['source']).toBe('cache');
    expect([rateLimit(first).remaining, rateLimit(second).remaining]).toEqual([2, 1]);
  });

  it('a request refused for its key (401) is not counted against anyone, and carries no RateLimit header', async () => {
    const url = await start(keysEnv);
    for (let i = 0; i < LIMIT + 2; i++) {
      const refused = await query(url, bearer('not-a-configured-key'));
      expect(refused.status).toBe(401);
      expect(refused.headers.get('ratelimit')).toBeNull();
    }
    const reply = await query(url, bearer(KEYS[0]));
    expect(reply.status).toBe(200);
    expect(rateLimit(reply).remaining).toBe(LIMIT - 1);
  });

  it('health probes, /metrics and /docs are never limited and carry no RateLimit header', async () => {
    const url = await start(keysEnv);
    for (let i = 0; i <= LIMIT; i++) await query(url, bearer(KEYS[0]));
    expect((await query(url, bearer(KEYS[0]))).status).toBe(429);
    for (const path of ['/health/live', '/health/ready', '/health', '/health/circuit-breaker', '/metrics', '/docs/json']) {
      for (let i = 0; i <= LIMIT; i++) {
        const response = await fetch(`${url}${path}`);
        await response.arrayBuffer();
        expect(response.status).toBe(200);
        expect(response.headers.get('ratelimit')).toBeNull();
      }
    }
  });
});

describe('without API keys: a budget per client address', () => {
  const forwardedFor = (address: string) => ({ 'x-forwarded-for': address });

  it('TRUST_PROXY=false (the default): X-Forwarded-For is ignored, so a client cannot get a fresh budget by inventing addresses', async () => {
    const url = await start({ RATE_LIMIT_PER_MINUTE: String(LIMIT) });
    for (let i = 0; i < LIMIT; i++) expect((await query(url, forwardedFor(`203.0.113.${i}`))).status).toBe(200);
    expect((await query(url, forwardedFor('203.0.113.99'))).status).toBe(429);
  });

  it('TRUST_PROXY=true: each address X-Forwarded-For names has its own budget', async () => {
    const url = await start({ RATE_LIMIT_PER_MINUTE: String(LIMIT), TRUST_PROXY: 'true' });
    for (let i = 0; i < LIMIT; i++) expect((await query(url, forwardedFor('198.51.100.1'))).status).toBe(200);
    expect((await query(url, forwardedFor('198.51.100.1'))).status).toBe(429);
    const other = await query(url, forwardedFor('198.51.100.2'));
    expect(other.status).toBe(200);
    expect(rateLimit(other).remaining).toBe(LIMIT - 1);
  });

  it('TRUST_PROXY naming the proxies: the client is the nearest untrusted address, so an entry the client forged on the left is not used', async () => {
    // The app is reached from 127.0.0.1, the "load balancer"; it appended the real client, 198.51.100.7.
    const url = await start({ RATE_LIMIT_PER_MINUTE: String(LIMIT), TRUST_PROXY: 'loopback' });
    for (let i = 0; i < LIMIT; i++) expect((await query(url, forwardedFor(`10.9.9.${i}, 198.51.100.7`))).status).toBe(200);
    expect((await query(url, forwardedFor('10.9.9.200, 198.51.100.7'))).status).toBe(429);
    expect((await query(url, forwardedFor('10.9.9.0, 198.51.100.8'))).status).toBe(200);
  });
});

describe('RATE_LIMIT_PER_MINUTE=0 (the default)', () => {
  it('limits nobody and adds no RateLimit header', async () => {
    const url = await start({});
    for (let i = 0; i < 10; i++) {
      const reply = await query(url, {}, KNOWN[i % KNOWN.length]);
      expect(reply.status).toBe(200);
      expect(reply.headers.get('ratelimit')).toBeNull();
      expect(reply.headers.get('ratelimit-policy')).toBeNull();
    }
  });
});
