// The app as an operator runs it: `node dist/main.js` in its own OS process, signals, exit codes, its log.
import { connect } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { type AppProcess, killAppProcesses, spawnApp, startAppProcess } from './support/app-process.js';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import { eventually, withinMs } from './support/http.js';
import { LEVEL, logEntries, transitionsIn, linesContaining } from './support/log-lines.js';

interface Reply {
  status: number;
  body: Record<string, unknown>;
  text: string;
}

const HTTP_TIMEOUT_MS = 5000;
const EXIT_DEADLINE_MS = 10_000;

let upstream: FakeHfUpstream;

beforeAll(async () => {
  upstream = await FakeHfUpstream.start();
});

beforeEach(() => upstream.reset());

afterAll(async () => {
  await killAppProcesses();
  await upstream.close();
});

async function ask(app: AppProcess, query: string): Promise<Reply> {
  return read(
    await fetch(`${app.url}/assistant/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query }),
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    }),
  );
}

async function get(app: AppProcess, path: string): Promise<Reply> {
  return read(await fetch(`${app.url}${path}`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) }));
}

/** The status of GET `path`, its body read and dropped (a 404 is not JSON the way read() expects of answers). */
async function get404(app: AppProcess, path: string): Promise<number> {
  const response = await fetch(`${app.url}${path}`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  await response.arrayBuffer();
  return response.status;
}

async function read(response: Response): Promise<Reply> {
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text) as Record<string, unknown>, text };
}

/** Calls `probe` until `done` holds for its result; fails with the last result after `timeoutMs`. */

/** Opens a brand-new TCP connection (no keep-alive reuse): true if the port accepts it. */
function acceptsConnections(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('shutting down on SIGTERM', () => {
  it('turns not-ready at once, keeps serving through the drain, finishes the request in flight, refuses new connections, and exits 0', async () => {
    upstream.setFault({ kind: 'ok', latencyMs: 800, answer: 'Half-open lets one trial call through.' });
    const app = await startAppProcess({ HF_ENDPOINT_URL: upstream.url, SHUTDOWN_DRAIN_SECONDS: '0.3' });

    const inFlight = ask(app, 'what does half-open mean');
    await upstream.waitForCalls(1, HTTP_TIMEOUT_MS);
    app.process.kill('SIGTERM');

    // Readiness' own 503 (phase "draining"), not Fastify's 503 for a server that is already closing.
    const notReady = await eventually(
      () => get(app, '/health/ready'),
      (reply) => reply.status === 503,
      2000,
    );
    expect(notReady.body).toMatchObject({ status: 'error', error: { readiness: { status: 'down', phase: 'draining' } } });
    const live = await get(app, '/health/live');
    expect(live.status).toBe(200);

    await eventually(
      () => acceptsConnections(app.url),
      (accepted) => !accepted,
      5000,
    );

    const answered = await inFlight;
    expect(answered.status).toBe(200);
    expect(answered.body).toMatchObject({ source: 'llm', degraded: false, answer: 'Half-open lets one trial call through.' });

    await expect(withinMs(app.exited, EXIT_DEADLINE_MS, 'exit after SIGTERM')).resolves.toEqual({ code: 0, signal: null });
    expect(linesContaining(app.output(), 'SIGTERM received')).toHaveLength(1);
    expect(linesContaining(app.output(), 'Stopped')).toHaveLength(1);
  });
});

describe('a variable that does not parse', () => {
  it.each([
    ['CIRCUIT_BREAKER_FAIL_THRESHOLD', '-1', 'less than 1'],
    ['PORT', 'abc', 'integer'],
    ['CIRCUIT_BREAKER_TIMEOUT_SECONDS', 'soon', 'number'],
  ])('%s=%s stops start-up with exit code 1 and one line naming it and saying "%s", no stack trace', async (variable, value, says) => {
    const app = await spawnApp({ [variable]: value });

    const exit = await withinMs(app.exited, EXIT_DEADLINE_MS, 'exit on a bad variable');

    expect(exit).toEqual({ code: 1, signal: null });
    const output = app.output();
    expect(linesContaining(output, variable)).toEqual([expect.stringContaining(`Invalid environment variable ${variable}`)]);
    expect(linesContaining(output, variable)[0]).toContain(says);
    expect(linesContaining(output, 'ERROR')).toHaveLength(1);
    expect(output).not.toContain('    at ');
  });
});

describe('NODE_ENV=production (.env.production) and API keys', () => {
  it('without ASSISTANT_API_KEYS or ASSISTANT_ALLOW_ANONYMOUS=true, stops start-up with exit code 1 and one line saying what to set', async () => {
    const app = await spawnApp({ NODE_ENV: 'production' });

    const exit = await withinMs(app.exited, EXIT_DEADLINE_MS, 'exit without keys in production');

    expect(exit).toEqual({ code: 1, signal: null });
    const output = app.output();
    expect(linesContaining(output, 'ASSISTANT_API_KEYS')).toEqual([
      expect.stringMatching(/Invalid environment variable ASSISTANT_API_KEYS: .*NODE_ENV=production.*ASSISTANT_ALLOW_ANONYMOUS=true/),
    ]);
    expect(linesContaining(output, 'ERROR')).toHaveLength(1);
    expect(output).not.toContain('    at ');
  });

  it('with keys: serves them, with the rate limit .env.production ships, and no /docs', async () => {
    const key = 'production-key-0123456789';
    const app = await startAppProcess({ NODE_ENV: 'production', ASSISTANT_API_KEYS: key });

    const withoutKey = await ask(app, 'what does half-open mean');
    const withKey = await fetch(`${app.url}/assistant/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query: 'what does half-open mean' }),
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    const docs = await get404(app, '/docs');

    expect(withoutKey.status).toBe(401);
    expect(withKey.status).toBe(200);
    await withKey.arrayBuffer();
    expect(withKey.headers.get('ratelimit-policy')).toMatch(/^"default";q=([1-9]\d*);w=60$/);
    expect(docs).toBe(404);
    await expect(withinMs(app.kill('SIGINT'), EXIT_DEADLINE_MS, 'exit after SIGINT')).resolves.toEqual({ code: 0, signal: null });
  });

  it('with ASSISTANT_ALLOW_ANONYMOUS=true: serves without keys, as asked', async () => {
    const app = await startAppProcess({ NODE_ENV: 'production', ASSISTANT_ALLOW_ANONYMOUS: 'true' });

    expect((await ask(app, 'what does half-open mean')).status).toBe(200);
    await expect(withinMs(app.kill('SIGINT'), EXIT_DEADLINE_MS, 'exit after SIGINT')).resolves.toEqual({ code: 0, signal: null });
  });

  it('development (npm start, .env.development) serves with no keys at all', async () => {
    const app = await startAppProcess({ NODE_ENV: 'development' });

    expect((await ask(app, 'what does half-open mean')).status).toBe(200);
    await expect(withinMs(app.kill('SIGINT'), EXIT_DEADLINE_MS, 'exit after SIGINT')).resolves.toEqual({ code: 0, signal: null });
  });
});

describe('the embedded defaults', () => {
  it('serve excerpts with no token, endpoint or Redis, and warn once that no model is configured', async () => {
    const app = await startAppProcess();

    const reply = await ask(app, 'what does half-open mean');

    expect(reply.status).toBe(200);
    expect(reply.body).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'upstream_unconfigured' });
    expect(reply.body['excerpts']).toEqual(expect.arrayContaining([expect.objectContaining({ text: expect.any(String) })]));
    const warnings = logEntries(app.output()).filter((entry) => entry.level === LEVEL.warn);
    expect(warnings).toEqual([expect.objectContaining({ msg: expect.stringContaining('Neither HF_TOKEN nor HF_ENDPOINT_URL is set') })]);
    await expect(withinMs(app.kill('SIGINT'), EXIT_DEADLINE_MS, 'exit after SIGINT')).resolves.toEqual({ code: 0, signal: null });
    // SIGINT (Ctrl-C) skips the default 5 s drain.
    expect(linesContaining(app.output(), 'SIGINT received')).toEqual([expect.stringContaining('draining in 0 ms')]);
  });
});

describe('file descriptors', () => {
  it('idle keep-alive connections by the hundred cannot take the ones the model calls need: the model answers, the circuit stays closed', async () => {
    // 256 descriptors, so at most 128 client connections; 400 clients each make one request and keep the socket.
    const app = await startAppProcess({ HF_ENDPOINT_URL: upstream.url, CIRCUIT_BREAKER_FAIL_THRESHOLD: '2' }, { openFiles: 256 });
    const { hostname, port } = new URL(app.url);
    const sockets = Array.from({ length: 400 }, () => connect({ host: hostname, port: Number(port) }).on('error', () => undefined));
    const idle = sockets.map(
      (socket) =>
        new Promise<void>((resolve) => {
          socket.once('data', () => resolve());
          socket.once('close', () => resolve());
          socket.write(`GET /health/live HTTP/1.1\r\nHost: ${hostname}\r\nConnection: keep-alive\r\n\r\n`);
        }),
    );
    try {
      await Promise.all(idle);
      for (let i = 0; i < 4; i++) {
        const reply = await ask(app, `what does the breaker do, question ${i}?`);
        expect({ status: reply.status, source: reply.body['source'], degraded: reply.body['degraded'] }).toEqual({
          status: 200,
          source: 'llm',
          degraded: false,
        });
      }
      const breaker = await get(app, '/health/circuit-breaker');
      expect(breaker.status).toBe(200);
      expect(breaker.body).toMatchObject({ details: { huggingface: { state: 'closed', failures: 0 } } });
      expect(app.output()).not.toContain('EMFILE');
      // No more than the cap stayed connected.
      expect(sockets.filter((socket) => !socket.destroyed && !socket.readableEnded).length).toBeLessThanOrEqual(128);
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });
});

describe('the HF token', () => {
  it('never appears in the log or a response over successes, failures, an open circuit and recovery', async () => {
    const secret = 'hf_process_SECRET_never_logged';
    const app = await startAppProcess({
      HF_TOKEN: secret,
      HF_ENDPOINT_URL: upstream.url,
      CIRCUIT_BREAKER_FAIL_THRESHOLD: '2',
      CIRCUIT_BREAKER_RESET_TIMEOUT: '0.3',
    });
    const replies: Reply[] = [];

    replies.push(await ask(app, 'what does half-open mean'));
    expect(upstream.lastRequest?.headers.authorization).toBe(`Bearer ${secret}`);
    upstream.setFault({ kind: 'unauthorized' });
    replies.push(await ask(app, 'how is the circuit breaker configured'));
    upstream.setFault({ kind: 'error500' });
    replies.push(await ask(app, 'what is the cache for'));
    replies.push(await ask(app, 'what do the health probes say'));
    replies.push(await get(app, '/health/circuit-breaker'), await get(app, '/health'));
    upstream.setFault({ kind: 'ok' });
    const recovered = await eventually(
      () => ask(app, 'what is the knowledge base'),
      (reply) => reply.body['source'] === 'llm',
      5000,
    );
    replies.push(recovered);
    const exit = await withinMs(app.kill('SIGINT'), EXIT_DEADLINE_MS, 'exit after SIGINT');

    expect(replies.slice(0, 4).map((reply) => reply.body['source'])).toEqual(['llm', 'excerpts', 'excerpts', 'excerpts']);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(transitionsIn(logEntries(app.output())).map(({ to }) => to)).toEqual(expect.arrayContaining(['open', 'closed']));
    expect(app.output()).not.toContain('SECRET');
    for (const reply of replies) expect(reply.text).not.toContain('SECRET');
  });
});

describe('circuit breaker transitions', () => {
  it('are logged once each, with the breaker name: closed→open, open→half_open, half_open→closed', async () => {
    upstream.setFault({ kind: 'error500' });
    const app = await startAppProcess({
      HF_ENDPOINT_URL: upstream.url,
      CIRCUIT_BREAKER_NAME: 'hf-process',
      CIRCUIT_BREAKER_FAIL_THRESHOLD: '2',
      CIRCUIT_BREAKER_RESET_TIMEOUT: '0.3',
    });

    const failures = [await ask(app, 'what does half-open mean'), await ask(app, 'what is the cache for')];
    expect(failures.map((reply) => reply.body['circuit'])).toEqual([
      { name: 'hf-process', state: 'closed' },
      { name: 'hf-process', state: 'open' },
    ]);
    const halfOpen = await eventually(
      () => get(app, '/health/circuit-breaker'),
      (reply) => reply.status === 200,
      5000,
    );
    expect(halfOpen.body).toMatchObject({ details: { 'hf-process': { state: 'half_open' } } });
    upstream.setFault({ kind: 'ok' });
    const recovered = await ask(app, 'how is the circuit breaker configured');
    expect(recovered.body).toMatchObject({ source: 'llm', circuit: { name: 'hf-process', state: 'closed' } });
    await withinMs(app.kill('SIGINT'), EXIT_DEADLINE_MS, 'exit after SIGINT');

    expect(transitionsIn(logEntries(app.output()))).toEqual([
      { breaker: 'hf-process', from: 'closed', to: 'open' },
      { breaker: 'hf-process', from: 'open', to: 'half_open' },
      { breaker: 'hf-process', from: 'half_open', to: 'closed' },
    ]);
    // each one a JSON line of its own, its fields at the top level, from the breaker's logger
    for (const entry of logEntries(app.output()).filter((line) => line['event'] === 'circuit_breaker_transition')) {
      expect(entry).toMatchObject({ level: LEVEL.info, context: 'CircuitBreaker', failures: expect.any(Number) });
    }
  });
});
