// The HTTP edge: security headers on every response (Swagger UI still working), and slow clients cut off.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { REQUEST_TIMEOUT_MS } from '../src/app.setup.js';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import { KNOWN_QUESTIONS as KNOWN, startTestApp, type TestApp } from './support/test-app.js';

let upstream: FakeHfUpstream;
let testApp: TestApp;

beforeAll(async () => {
  upstream = await FakeHfUpstream.start();
  testApp = await startTestApp({ HF_ENDPOINT_URL: upstream.url });
});

afterAll(async () => {
  await testApp?.close();
  await upstream?.close();
});

/** The headers helmet sets with the app's options, checked on every kind of response. */
function expectSecurityHeaders(headers: Headers): void {
  expect(headers.get('x-content-type-options')).toBe('nosniff');
  expect(headers.get('x-frame-options')).toBe('SAMEORIGIN');
  expect(headers.get('content-security-policy')).toContain("default-src 'self'");
  // TLS ends at the ingress: /docs is read over plain http in the cluster and on a developer's machine
  expect(headers.get('content-security-policy')).not.toContain('upgrade-insecure-requests');
  expect(headers.get('strict-transport-security')).toMatch(/max-age=\d+/);
  expect(headers.get('cross-origin-opener-policy')).toBe('same-origin');
  expect(headers.get('x-powered-by')).toBeNull();
}

/** Writes `request` as it is on a connection of its own; resolves with everything received once the server closes it. */
function exchangeRaw(request: string): Promise<string> {
  const { port } = new URL(testApp.url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(request));
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(received));
  });
}

function parseRawResponse(raw: string): { status: number; headers: Headers; body: string } {
  const [head = '', body = ''] = raw.split('\r\n\r\n', 2);
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers = new Headers();
  for (const line of lines) headers.append(line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trim());
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1]), headers, body };
}

describe('security headers', () => {
  it.each<[string, () => Promise<Response>]>([
    [
      'an answer',
      () =>
        fetch(`${testApp.url}/assistant/query`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ query: KNOWN[0] }),
        }),
    ],
    [
      'a 400',
      () => fetch(`${testApp.url}/assistant/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }),
    ],
    ['a health probe', () => fetch(`${testApp.url}/health/live`)],
    ['the API documentation', () => fetch(`${testApp.url}/docs`)],
    ['a 404', () => fetch(`${testApp.url}/no-such-route`)],
    // Fastify answers a URL it cannot decode itself, before any hook runs
    ['the 400 for a malformed URL', () => fetch(`${testApp.url}/assistant/%zz`)],
  ])('are on %s', async (_case, request) => {
    const response = await request();
    expectSecurityHeaders(response.headers);
    // read to the end: an unread response keeps its request in flight, and the app's close would wait for it
    await response.arrayBuffer();
  });

  it.each<[string, number, string]>([
    ['a malformed header line', 400, 'GET /health/live HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n'],
    ['a malformed request line', 400, 'GET /health/live HTTP/9.9 nonsense\r\n\r\n'],
    ['headers over the limit', 431, `GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`],
  ])('are on the server’s own answer to %s (%i), with a JSON body, and the connection is closed', async (_case, status, request) => {
    const response = parseRawResponse(await exchangeRaw(request));

    expect(response.status).toBe(status);
    expectSecurityHeaders(response.headers);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(JSON.parse(response.body)).toMatchObject({ statusCode: status, message: expect.any(String) });
  });

  it('leave Swagger UI working: its page runs no inline script, and every script and style it loads is served', async () => {
    const page = await (await fetch(`${testApp.url}/docs`)).text();
    const scripts = [...page.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attributes, body] of scripts) {
      expect(attributes).toMatch(/\bsrc=/);
      expect(body?.trim()).toBe('');
    }
    const assets = [...page.matchAll(/(?:src|href)="([^"]+\.(?:js|css))"/g)].map(
      (match) => new URL(match[1] ?? '', `${testApp.url}/docs`).href,
    );
    for (const asset of assets) {
      const response = await fetch(asset);
      expect(response.status).toBe(200);
      expect((await response.arrayBuffer()).byteLength).toBeGreaterThan(0);
    }
  });
});

describe('a client that sends its body slowly', () => {
  it('is cut off once the request has taken longer than the request time-out, and the app goes on serving', async () => {
    const { port } = new URL(testApp.url);
    const socket = connect(Number(port), '127.0.0.1');
    const started = performance.now();
    const closed = new Promise<string>((resolve) => {
      let received = '';
      socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
      socket.on('close', () => resolve(received));
      socket.on('error', () => undefined);
    });
    socket.write('POST /assistant/query HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{');
    // One byte a second: alive, but never done.
    const trickle = setInterval(() => socket.write(' '), 1000);
    const received = await closed;
    clearInterval(trickle);
    const elapsed = performance.now() - started;

    expect(received).toMatch(/^HTTP\/1\.1 408\b/);
    expectSecurityHeaders(parseRawResponse(received).headers);
    expect(elapsed).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 500);
    // the time-out plus Node's 1 s check interval, with seconds to spare on a loaded machine
    expect(elapsed).toBeLessThan(REQUEST_TIMEOUT_MS + 5000);
    expect((await fetch(`${testApp.url}/health/live`)).status).toBe(200);
  }, 30_000);
});

describe('deeply nested JSON', () => {
  it.each<[string, string]>([
    ['an array nested 2000 deep', `${'['.repeat(2000)}1${']'.repeat(2000)}`],
    ['a query nested 5000 deep', `{"query": ${'['.repeat(5000)}"x"${']'.repeat(5000)}}`],
    ['objects nested 5000 deep', `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`],
  ])('%s is a 400 saying so, not a 500 (the validation would overflow its stack)', async (_case, body) => {
    const response = await fetch(`${testApp.url}/assistant/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ statusCode: 400, message: expect.stringContaining('nested deeper than 32') });
  });

  it('nesting within the limit, and brackets inside strings, are parsed as usual', async () => {
    const response = await fetch(`${testApp.url}/assistant/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: `${'[{'.repeat(100)} ${KNOWN[0]} \\"[` }),
    });
    expect(response.status).toBe(200);
    await response.arrayBuffer();
  });
});
