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
