// The log an operator reads: one JSON line per request with its id, secrets redacted, LOG_LEVEL obeyed.
import { connect } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { type AppProcess, killAppProcesses, startAppProcess } from './support/app-process.js';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import { ask, eventually, getHealth, type HttpResult, postRaw } from './support/http.js';
import { type CapturedOutput, captureOutput, isRequestLine, LEVEL, type LogEntry, logEntries, transitionsIn } from './support/log-lines.js';
import { startTestApp, type TestApp } from './support/test-app.js';

const HF_TOKEN = 'hf_logging_SECRET_model_token';
const CALLER_CREDENTIAL = 'hf_secret_CALLER_credential';
const KNOWN = 'What does half-open mean?';
const NONSENSE = 'zqxj vvkw';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function requestIdOf(result: HttpResult<unknown> | Response): string {
  const id = result.headers.get('x-request-id');
  if (id === null) throw new Error('the response carries no x-request-id');
  return id;
}

async function post(url: string, headers: Record<string, string>, body: unknown = { query: KNOWN }): Promise<Response> {
  const response = await fetch(`${url}/assistant/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  await response.arrayBuffer();
  return response;
}

describe('the request log (LOG_LEVEL=info)', () => {
  let upstream: FakeHfUpstream;
  let testApp: TestApp;
  let output: CapturedOutput;

  beforeAll(async () => {
    upstream = await FakeHfUpstream.start();
    output = captureOutput();
    testApp = await startTestApp({ HF_ENDPOINT_URL: upstream.url, HF_TOKEN, LOG_LEVEL: 'info', CIRCUIT_BREAKER_RESET_TIMEOUT: '30' });
  });
  afterAll(async () => {
    await testApp?.close();
    await upstream?.close();
    output?.restore();
  });
  beforeEach(() => upstream.reset());

  const linesOf = (reqId: string): LogEntry[] => logEntries(output.text()).filter((entry) => entry.reqId === reqId);

  /** A request's lines once its completion line is written: pino-http writes it on the response's `finish`, which may come after the client has read it. */
  const loggedLinesOf = (reqId: string): Promise<LogEntry[]> =>
    eventually(
      async () => linesOf(reqId),
      (lines) => lines.some(isRequestLine),
    );

  it('is one line a request, with its method, url, status, response time and reqId, at a level from its status', async () => {
    const answered = await ask(testApp.url, { query: KNOWN });
    const rejected = await ask(testApp.url, { query: '' });
    const unsupported = await postRaw(testApp.url, 'query=x', 'text/plain');
    upstream.setFault({ kind: 'error500' });
    const unavailable = await ask(testApp.url, { query: NONSENSE });

    const cases = [
      [answered, 200, LEVEL.info, 'request completed'],
      [rejected, 400, LEVEL.warn, 'request completed'],
      [unsupported, 415, LEVEL.warn, 'request completed'],
      [unavailable, 503, LEVEL.error, 'request errored'],
    ] as const;
    const ids = cases.map(([result]) => requestIdOf(result));
    expect(new Set(ids).size).toBe(cases.length);
    for (const [result, status, level, msg] of cases) {
      expect(result.status).toBe(status);
      expect(await loggedLinesOf(requestIdOf(result))).toEqual([
        expect.objectContaining({
          level,
          msg,
          reqId: requestIdOf(result),
          req: expect.objectContaining({ method: 'POST', url: '/assistant/query' }),
          res: { statusCode: status },
          responseTime: expect.any(Number),
        }),
      ]);
    }
    // no "request received" line, nor any other per-request line
    expect(logEntries(output.text()).filter((entry) => entry.reqId !== undefined && ids.includes(entry.reqId))).toHaveLength(cases.length);
  });

  it('honours an incoming x-request-id: the response returns it and the request is logged under it', async () => {
    const response = await post(testApp.url, { 'x-request-id': 'abc-123' });

    expect(response.status).toBe(200);
    expect(response.headers.get('x-request-id')).toBe('abc-123');
    expect(await loggedLinesOf('abc-123')).toEqual([expect.objectContaining({ msg: 'request completed', res: { statusCode: 200 } })]);
  });

  it.each([
    ['no x-request-id', {}],
    ['an x-request-id longer than 128 characters', { 'x-request-id': 'x'.repeat(129) }],
    ['an x-request-id with a space in it', { 'x-request-id': 'two words' }],
  ])('generates a UUID, returns it and logs the request under it when the request has %s', async (_case, headers) => {
    const response = await post(testApp.url, headers);

    const id = requestIdOf(response);
    expect(id).toMatch(UUID);
    expect(await loggedLinesOf(id)).toEqual([expect.objectContaining({ reqId: id, res: { statusCode: 200 } })]);
  });

  it('returns a request id on every response: 4xx, 503, health routes and the API documentation', async () => {
    upstream.setFault({ kind: 'error500' });
    const responses: Array<HttpResult<unknown> | Response> = [
      await ask(testApp.url, { query: '' }),
      await ask(testApp.url, { query: 'x'.repeat(100 * 1024) }),
      await postRaw(testApp.url, 'query=x', 'text/plain'),
      await ask(testApp.url, { query: NONSENSE }),
      await fetch(`${testApp.url}/no-such-route`),
      await fetch(`${testApp.url}/docs/json`),
    ];
    for (const path of ['', '/live', '/ready', '/circuit-breaker'] as const) responses.push(await getHealth(testApp.url, path));

    expect(responses.map((response) => response.status)).toEqual([400, 413, 415, 503, 404, 200, 200, 200, 200, 200]);
    const ids = responses.map(requestIdOf);
    for (const id of ids) expect(id).toMatch(UUID);
    expect(new Set(ids).size).toBe(responses.length);
  });

  it('never holds the caller\'s Authorization header or the HF token, and shows "[redacted]" where the header was', async () => {
    upstream.setFault({ kind: 'unauthorized' });

    // a question not asked before, so the model is called rather than the cache answering
    const response = await post(
      testApp.url,
      { authorization: `Bearer ${CALLER_CREDENTIAL}`, cookie: `session=${CALLER_CREDENTIAL}` },
      { query: 'How does the answer cache work?' },
    );

    expect(response.status).toBe(200);
    // the token did travel, to the model and nowhere else
    expect(upstream.lastRequest?.headers.authorization).toBe(`Bearer ${HF_TOKEN}`);
    // the request's own line: a log made during it (this 401 may open the circuit) carries its reqId too
    const line = (await loggedLinesOf(requestIdOf(response))).find(isRequestLine);
    expect(line?.req?.headers).toMatchObject({ authorization: '[redacted]', cookie: '[redacted]' });
    const lines = output.text().split('\n');
    expect(lines.filter((text) => text.includes(CALLER_CREDENTIAL) || text.includes(HF_TOKEN) || text.includes('SECRET'))).toEqual([]);
  });

  it('never holds a key a caller put in the query string: api_key, key, token and access_token show "[redacted]"', async () => {
    const secrets = ['QUERYsecretAPI', 'QUERYsecretKEY', 'QUERYsecretTOKEN', 'QUERYsecretACCESS'];
    const query = `api_key=${secrets[0]}&lang=en&KEY=${secrets[1]}&token=${secrets[2]}&access_token=${secrets[3]}`;

    const answered = await fetch(`${testApp.url}/assistant/query?${query}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: KNOWN }),
    });
    const unknown = await fetch(`${testApp.url}/no-such-route?${query}`);
    await Promise.all([answered.arrayBuffer(), unknown.arrayBuffer()]);

    expect([answered.status, unknown.status]).toEqual([200, 404]);
    const redacted = 'api_key=[redacted]&lang=en&KEY=[redacted]&token=[redacted]&access_token=[redacted]';
    for (const [response, path] of [
      [answered, '/assistant/query'],
      [unknown, '/no-such-route'],
    ] as const) {
      const line = (await loggedLinesOf(requestIdOf(response))).find(isRequestLine);
      expect(line?.req?.url).toBe(`${path}?${redacted}`);
    }
    expect(
      output
        .text()
        .split('\n')
        .filter((text) => secrets.some((secret) => text.includes(secret))),
    ).toEqual([]);
  });

  it('leaves probe requests out at LOG_LEVEL=info (they are logged at debug)', async () => {
    const probes = [await getHealth(testApp.url, '/live'), await getHealth(testApp.url, '/ready')];
    const question = await ask(testApp.url, { query: KNOWN });

    expect(probes.map((probe) => probe.status)).toEqual([200, 200]);
    // lines are written in the order requests finish: once the question's is in, a probe's would be too
    expect(await loggedLinesOf(requestIdOf(question))).toHaveLength(1);
    for (const probe of probes) expect(linesOf(requestIdOf(probe))).toEqual([]);
  });

  it('has the breaker transition as JSON fields (event, breaker, from, to), not a formatted message', async () => {
    // THRESHOLD (3) failures in a row open the circuit, if the failures of earlier tests have not already
    upstream.setFault({ kind: 'error500' });
    for (const query of ['first failing question', 'second failing question', 'third failing question']) await ask(testApp.url, { query });

    const transitions = logEntries(output.text()).filter((entry) => entry['event'] === 'circuit_breaker_transition');
    expect(transitionsIn(transitions)).toEqual([{ breaker: 'huggingface', from: 'closed', to: 'open' }]);
    expect(transitions[0]).toMatchObject({
      level: LEVEL.info,
      context: 'CircuitBreaker',
      failures: 3,
      nextAttemptAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      // logged during the request whose failure opened the circuit, so it carries that request's id
      reqId: expect.stringMatching(UUID),
    });
  });
});

describe('a client that goes away mid-request (LOG_LEVEL=info)', () => {
  let upstream: FakeHfUpstream;
  let testApp: TestApp;
  let output: CapturedOutput;

  beforeAll(async () => {
    upstream = await FakeHfUpstream.start();
    output = captureOutput();
    testApp = await startTestApp({ HF_ENDPOINT_URL: upstream.url, LOG_LEVEL: 'info', CIRCUIT_BREAKER_TIMEOUT_SECONDS: '10' });
  });
  afterAll(async () => {
    await testApp?.close();
    await upstream?.close();
    output?.restore();
  });

  const linesOf = (reqId: string): LogEntry[] => logEntries(output.text()).filter((entry) => entry.reqId === reqId);
  const loggedLinesOf = (reqId: string): Promise<LogEntry[]> =>
    eventually(
      async () => linesOf(reqId),
      (lines) => lines.some(isRequestLine),
    );

  /** Sends `head` and `sent` on a connection of its own, then closes it, without reading a response, once `leave` resolves. */
  function leaveMidRequest(head: string, sent: string, leave: () => Promise<void>): Promise<void> {
    const { port } = new URL(testApp.url);
    return new Promise((resolve) => {
      const socket = connect(Number(port), '127.0.0.1', () => {
        socket.write(`${head}\r\n\r\n${sent}`);
        void leave().then(() => socket.destroy());
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve());
    });
  }

  /** The request's lines once a later request's line is in: whatever it logs after its own completion line is in by then. */
  async function settledLinesOf(reqId: string): Promise<LogEntry[]> {
    await loggedLinesOf(reqId);
    const later = await post(testApp.url, { 'x-request-id': `after-${reqId}` });
    await loggedLinesOf(requestIdOf(later));
    return linesOf(reqId);
  }

  it('logs a client that goes away in the middle of its body once, at info, as 499, and never as an error', async () => {
    const head = [
      'POST /assistant/query HTTP/1.1',
      'Host: 127.0.0.1',
      'Content-Type: application/json',
      'Content-Length: 1000',
      'x-request-id: gone-mid-body',
    ].join('\r\n');

    // the server has the head and part of the body before the client goes
    await leaveMidRequest(head, '{"query": "a', () => new Promise((resolve) => setTimeout(resolve, 200)));

    expect(await settledLinesOf('gone-mid-body')).toEqual([
      expect.objectContaining({ level: LEVEL.info, req: expect.objectContaining({ url: '/assistant/query' }), res: { statusCode: 499 } }),
    ]);
    expect(logEntries(output.text()).filter((entry) => entry.context === 'ExceptionsHandler' || entry.level >= LEVEL.error)).toEqual([]);
  });

  it('logs a client that goes away while the model is answering once, at info, as 499', async () => {
    upstream.setFault({ kind: 'ok', latencyMs: 3000 });
    const body = JSON.stringify({ query: 'How are documents chunked into excerpts?' });
    const head = [
      'POST /assistant/query HTTP/1.1',
      'Host: 127.0.0.1',
      'Content-Type: application/json',
      `Content-Length: ${Buffer.byteLength(body)}`,
      'x-request-id: gone-mid-answer',
    ].join('\r\n');
    const calls = upstream.calls;

    await leaveMidRequest(head, body, () => upstream.waitForCalls(calls + 1, 5000));

    expect(await settledLinesOf('gone-mid-answer')).toEqual([expect.objectContaining({ level: LEVEL.info, res: { statusCode: 499 } })]);
  });
});

describe('LOG_LEVEL in a real process', () => {
  afterAll(killAppProcesses);

  async function run(env: Record<string, string>, work: (app: AppProcess) => Promise<void>): Promise<LogEntry[]> {
    const app = await startAppProcess(env);
    await work(app);
    expect(await app.kill('SIGINT')).toEqual({ code: 0, signal: null });
    return logEntries(app.output());
  }

  it('debug: the readiness probes the start-up waited on are logged, at debug', async () => {
    const entries = await run({ LOG_LEVEL: 'debug' }, async () => undefined);

    const probes = entries.filter(isRequestLine).filter((entry) => entry.req?.url === '/health/ready');
    expect(probes.length).toBeGreaterThan(0);
    expect(probes.map((entry) => entry.level)).toEqual(probes.map(() => LEVEL.debug));
  });

  it('info (the default): a question is logged, the probes are not, every line is JSON', async () => {
    let output = '';
    const entries = await run({}, async (app) => {
      expect((await ask(app.url, { query: KNOWN })).status).toBe(200);
      output = app.output();
    });

    expect(entries.filter(isRequestLine).map((entry) => [entry.req?.url, entry.level])).toEqual([['/assistant/query', LEVEL.info]]);
    const lines = output.split('\n').filter((line) => line !== '');
    expect(lines.length).toBe(logEntries(output).length);
  });

  it('warn: no info line at all, while warnings and 4xx requests still are', async () => {
    const entries = await run({ LOG_LEVEL: 'warn' }, async (app) => {
      expect((await ask(app.url, { query: KNOWN })).status).toBe(200);
      expect((await ask(app.url, { query: '' })).status).toBe(400);
    });

    expect(entries.filter((entry) => entry.level < LEVEL.warn)).toEqual([]);
    expect(entries.filter(isRequestLine).map((entry) => entry.res?.statusCode)).toEqual([400]);
    expect(entries.map((entry) => entry.msg)).toContain(
      'Neither HF_TOKEN nor HF_ENDPOINT_URL is set: no model will be called, every answer is degraded',
    );
  });
});
