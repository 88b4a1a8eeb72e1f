// API keys (ASSISTANT_API_KEYS) over real HTTP: who gets in, what a refusal says, and that no key reaches a log.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import { type CapturedOutput, captureOutput, isRequestLine, logEntries } from './support/log-lines.js';
import { KNOWN_QUESTIONS as KNOWN, startTestApp, type TestApp } from './support/test-app.js';

const PLAIN_KEY = 'alpha-key-0123456789';
/** Configured by its sha256 only: the key itself is not in the configuration. */
const HASHED_KEY = 'beta-key-9876543210';
const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex');

let upstream: FakeHfUpstream;
let testApp: TestApp;
let output: CapturedOutput;

beforeAll(async () => {
  upstream = await FakeHfUpstream.start();
  output = captureOutput();
  testApp = await startTestApp({
    HF_ENDPOINT_URL: upstream.url,
    ASSISTANT_API_KEYS: `${PLAIN_KEY}, sha256:${sha256Hex(HASHED_KEY)}`,
    LOG_LEVEL: 'info',
  });
});

afterAll(async () => {
  await testApp?.close();
  await upstream?.close();
  output?.restore();
});

beforeEach(() => output.clear());

function query(headers: Record<string, string>): Promise<Response> {
  return fetch(`${testApp.url}/assistant/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ query: KNOWN[0] }),
  });
}

describe('POST /assistant/query with ASSISTANT_API_KEYS set', () => {
  it.each<[string, Record<string, string>, string]>([
    ['no key', {}, 'An API key is required'],
    ['a wrong key as a bearer token', { authorization: 'Bearer not-a-key' }, 'The API key is not valid'],
    ['a wrong key in x-api-key', { 'x-api-key': 'not-a-key' }, 'The API key is not valid'],
    ['the sha256 itself instead of the key', { authorization: `Bearer ${sha256Hex(HASHED_KEY)}` }, 'The API key is not valid'],
    ['another scheme', { authorization: `Basic ${Buffer.from(`u:${PLAIN_KEY}`).toString('base64')}` }, 'An API key is required'],
  ])('answers %s with 401, WWW-Authenticate: Bearer and a JSON body, without calling the model', async (_case, headers, message) => {
    const calls = upstream.calls;
    const response = await query(headers);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
    expect(await response.json()).toMatchObject({ statusCode: 401, error: 'Unauthorized', message: expect.stringContaining(message) });
    expect(upstream.calls).toBe(calls);
  });

  it.each<[string, Record<string, string>]>([
    ['a plain key as a bearer token', { authorization: `Bearer ${PLAIN_KEY}` }],
    ['a plain key in x-api-key', { 'x-api-key': PLAIN_KEY }],
    ['a key configured by its sha256', { authorization: `bearer ${HASHED_KEY}` }],
  ])('answers with %s', async (_case, headers) => {
    const response = await query(headers);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ source: expect.stringMatching(/^(llm|cache)$/) });
  });

  it('logs the key’s id (first 8 hex digits of its sha256), never the key', async () => {
    await query({ authorization: `Bearer ${PLAIN_KEY}` });
    await query({ 'x-api-key': PLAIN_KEY });
    await query({ 'x-api-key': 'wrong-secret-key' });
    const text = output.text();
    expect(text).not.toContain(PLAIN_KEY);
    expect(text).not.toContain('wrong-secret-key');
    const lines = logEntries(text).filter(isRequestLine);
    expect(lines.map((line) => [line.res?.statusCode, line['keyId']])).toEqual([
      [200, sha256Hex(PLAIN_KEY).slice(0, 8)],
      [200, sha256Hex(PLAIN_KEY).slice(0, 8)],
      [401, undefined],
    ]);
  });
});

describe('routes that never need a key', () => {
  it.each(['/health', '/health/live', '/health/ready', '/health/circuit-breaker', '/metrics', '/docs', '/docs/json'])(
    'GET %s answers without one',
    async (path) => {
      const response = await fetch(`${testApp.url}${path}`);
      expect(response.status).not.toBe(401);
      expect(response.status).toBeLessThan(500);
      await response.arrayBuffer();
    },
  );
});

describe('failed key checks: a budget per client address', () => {
  /** The budget the app applies: failed checks a minute from one client address. */
  const BUDGET = 20;
  let budgetApp: TestApp;

  beforeAll(async () => {
    // TRUST_PROXY=true: each X-Forwarded-For address stands for a client of its own, as behind a load balancer.
    budgetApp = await startTestApp({ HF_ENDPOINT_URL: upstream.url, ASSISTANT_API_KEYS: PLAIN_KEY, TRUST_PROXY: 'true' });
  });
  afterAll(async () => {
    await budgetApp?.close();
  });

  function from(address: string, headers: Record<string, string> = {}, path = '/assistant/query'): Promise<Response> {
    const body = path === '/assistant/query' ? { query: KNOWN[1] } : { messages: [{ role: 'user', content: KNOWN[1] }] };
    return fetch(`${budgetApp.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': address, ...headers },
      body: JSON.stringify(body),
    });
  }

  async function scrapeRejections(): Promise<Record<string, number>> {
    const text = await (await fetch(`${budgetApp.url}/metrics`)).text();
    const counts: Record<string, number> = {};
    for (const match of text.matchAll(/^assistant_api_key_rejections_total\{reason="([a-z_]+)"\} (\d+)$/gm))
      counts[match[1]] = Number(match[2]);
    return counts;
  }

  it(`answers ${BUDGET} failed checks (no key or a wrong one) a minute from one address with 401, then 429 with Retry-After before any key is looked at, a right one included`, async () => {
    const attacker = '198.51.100.7';
    for (let i = 0; i < BUDGET; i++) {
      const response = await from(attacker, i % 2 === 0 ? {} : { 'x-api-key': `guess-${i}` });
      await response.arrayBuffer();
      expect({ attempt: i + 1, status: response.status }).toEqual({ attempt: i + 1, status: 401 });
    }
    const calls = upstream.calls;

    for (const headers of [{ 'x-api-key': 'one-guess-too-many' }, {}, { authorization: `Bearer ${PLAIN_KEY}` }] as Record<
      string,
      string
    >[]) {
      const refused = await from(attacker, headers);
      expect(refused.status).toBe(429);
      const retryAfter = Number(refused.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(await refused.json()).toEqual({
        statusCode: 429,
        error: 'Too Many Requests',
        message: expect.stringContaining(`${BUDGET} failed API key checks a minute`),
        retryAfterSeconds: retryAfter,
      });
    }
    // the same refusal under /v1, in OpenAI's shape
    const completion = await from(attacker, { authorization: `Bearer ${PLAIN_KEY}` }, '/v1/chat/completions');
    expect(completion.status).toBe(429);
    expect(Number(completion.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(await completion.json()).toMatchObject({ error: { type: 'requests', code: 'rate_limit_exceeded' } });
    expect(upstream.calls).toBe(calls);

    // another address is not affected: its right key gets in, its wrong one is a 401
    const neighbour = await from('203.0.113.9', { authorization: `Bearer ${PLAIN_KEY}` });
    expect(neighbour.status).toBe(200);
    await neighbour.arrayBuffer();
    const wrong = await from('203.0.113.9', { 'x-api-key': 'wrong' });
    expect(wrong.status).toBe(401);
    await wrong.arrayBuffer();
  });

  it('counts the refusals in assistant_api_key_rejections_total by reason: missing, invalid and over_budget', async () => {
    const before = await scrapeRejections();
    const address = '192.0.2.44';
    for (let i = 0; i < BUDGET; i++) await (await from(address, i < 5 ? {} : { 'x-api-key': `guess-${i}` })).arrayBuffer();
    await (await from(address, { 'x-api-key': 'one-more' })).arrayBuffer();
    await (await from(address, { authorization: `Bearer ${PLAIN_KEY}` })).arrayBuffer();
    await (await from('192.0.2.45', { authorization: `Bearer ${PLAIN_KEY}` })).arrayBuffer();

    const after = await scrapeRejections();
    const delta = (reason: string) => (after[reason] ?? 0) - (before[reason] ?? 0);
    expect({ missing: delta('missing'), invalid: delta('invalid'), over_budget: delta('over_budget') }).toEqual({
      missing: 5,
      invalid: BUDGET - 5,
      over_budget: 2,
    });
  });

  it('TRUST_PROXY=false: X-Forwarded-For is ignored, so a client cannot get a fresh budget by inventing addresses', async () => {
    const direct = await startTestApp({ HF_ENDPOINT_URL: upstream.url, ASSISTANT_API_KEYS: PLAIN_KEY, TRUST_PROXY: 'false' });
    try {
      const statuses: number[] = [];
      for (let i = 0; i <= BUDGET; i++) {
        const response = await fetch(`${direct.url}/assistant/query`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-forwarded-for': `10.9.${i}.1`, 'x-api-key': `guess-${i}` },
          body: JSON.stringify({ query: KNOWN[1] }),
        });
        await response.arrayBuffer();
        statuses.push(response.status);
      }
      expect(statuses).toEqual([...Array<number>(BUDGET).fill(401), 429]);
    } finally {
      await direct.close();
    }
  });
});
