import { request } from 'node:http';
import { jest } from '@jest/globals';
import { InferenceClient, InferenceClientProviderApiError, InferenceClientProviderOutputError } from '@huggingface/inference';
import { FakeHfUpstream, main, type Fault, type UpstreamStats } from './fake-hf-upstream.js';
import { describeSchemaErrors, validateUpstreamBody, type UpstreamSchemaName } from './upstream-schema.js';

const QUESTION = 'What is the refund policy for annual plans?';
const MESSAGES = [
  { role: 'system', content: 'Answer from these excerpts: [1] Refunds within 30 days.' },
  { role: 'user', content: QUESTION },
];

let upstream: FakeHfUpstream;

beforeAll(async () => {
  upstream = await FakeHfUpstream.start();
});
beforeEach(() => upstream.reset());
afterAll(() => upstream.close());

function postChat(body: unknown = { model: 'x', messages: MESSAGES }): Promise<Response> {
  return fetch(`${upstream.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

function askClient(options: { signal?: AbortSignal; retry?: boolean } = {}) {
  const client = new InferenceClient('hf_test_token', { endpointUrl: upstream.url });
  return client.chatCompletion({ model: 'x', messages: MESSAGES }, { retry_on_error: options.retry ?? false, signal: options.signal });
}

interface Caught {
  name: string;
  message: string;
  cause?: unknown;
}

/**
 * The rejection of a call that must fail. Checked by shape, not instanceof: fetch's TypeError, SyntaxError and
 * DOMException come from Node's own realm, so `instanceof TypeError` is false inside jest's sandbox.
 */
async function rejectionOf(call: Promise<unknown>): Promise<Caught> {
  const outcome = await call.then(
    () => undefined,
    (error: unknown) => error,
  );
  if (!isCaught(outcome)) throw new Error(`expected an error-like rejection, got ${String(outcome)}`);
  return outcome;
}

function isCaught(value: unknown): value is Caught {
  return typeof value === 'object' && value !== null && 'name' in value && 'message' in value;
}

async function statusesOf(count: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < count; i += 1) {
    const response = await postChat();
    await response.arrayBuffer(); // drain, so undici can reuse the connection
    statuses.push(response.status);
  }
  return statuses;
}

describe('every body the fake sends matches the upstream contract', () => {
  const cases: Array<[Fault, number, UpstreamSchemaName]> = [
    [{ kind: 'ok' }, 200, 'ChatCompletion'],
    [{ kind: 'error500' }, 500, 'ErrorResponse'],
    [{ kind: 'loading503' }, 503, 'ErrorResponse'],
    [{ kind: 'rateLimited429' }, 429, 'ErrorResponse'],
    [{ kind: 'badRequest' }, 400, 'ErrorResponse'],
    [{ kind: 'unprocessable' }, 422, 'ErrorResponse'],
    [{ kind: 'payloadTooLarge' }, 413, 'ErrorResponse'],
    [{ kind: 'requestTimeout' }, 408, 'ErrorResponse'],
    [{ kind: 'unknownModel' }, 400, 'RouterModelError'],
    [{ kind: 'unauthorized' }, 401, 'RouterPlainError'],
    [{ kind: 'paymentRequired' }, 402, 'RouterPlainError'],
    [{ kind: 'forbidden' }, 403, 'RouterPlainError'],
  ];

  test.each(cases)('%o answers %i with a JSON body valid as %s', async (fault, status, schema) => {
    upstream.setFault(fault);
    const response = await postChat();
    expect(response.status).toBe(status);
    expect(response.headers.get('content-type')).toBe('application/json');
    const body: unknown = await response.json();
    expect(describeSchemaErrors(validateUpstreamBody(schema, body))).toBe('');
  });

  test('the ok body also validates against each nested spec schema it is built from', async () => {
    const body = (await (await postChat()).json()) as { choices: Array<{ message: unknown }>; usage: unknown };
    expect(validateUpstreamBody('ChatCompletionComplete', body.choices[0])).toBeNull();
    expect(validateUpstreamBody('OutputMessage', body.choices[0]?.message)).toBeNull();
    expect(validateUpstreamBody('Usage', body.usage)).toBeNull();
  });

  test('the validator really rejects: a missingFields body fails ChatCompletion on choices', async () => {
    upstream.setFault({ kind: 'missingFields' });
    const body: unknown = await (await postChat()).json();
    expect(describeSchemaErrors(validateUpstreamBody('ChatCompletion', body))).toContain("'choices'");
  });

  test('GET /info matches the spec Info schema and GET /health answers 200 with an empty body', async () => {
    const info: unknown = await (await fetch(`${upstream.url}/info`)).json();
    expect(validateUpstreamBody('Info', info)).toBeNull();
    const health = await fetch(`${upstream.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe('');
  });
});

describe('fault options shape the response', () => {
  test('ok echoes the model and answers deterministically from the last user message', async () => {
    const body = (await (await postChat()).json()) as { model: string; object: string; choices: Array<{ message: { content: string } }> };
    expect(body.model).toBe('x');
    expect(body.object).toBe('chat.completion');
    expect(body.choices[0]?.message.content).toBe(`Answer: ${QUESTION}`);
  });

  test('ok falls back to model tgi and honours a fixed answer after the configured latency', async () => {
    upstream.setFault({ kind: 'ok', answer: 'Fixed.', latencyMs: 120 });
    const startedAt = Date.now();
    const body = (await (await postChat({ messages: MESSAGES })).json()) as {
      model: string;
      choices: Array<{ message: { content: string } }>;
    };
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(110);
    expect(body.model).toBe('tgi');
    expect(body.choices[0]?.message.content).toBe('Fixed.');
  });

  test('rateLimited429 sends Retry-After and the Hub ratelimit headers only when asked', async () => {
    upstream.setFault({ kind: 'rateLimited429', retryAfterSeconds: 7, ratelimitSeconds: 42 });
    const limited = await postChat();
    expect(limited.headers.get('retry-after')).toBe('7');
    expect(limited.headers.get('ratelimit')).toBe('"api";r=0;t=42');
    expect(limited.headers.get('ratelimit-policy')).toBe('"fixed window";"api";q=1000;w=300');
    upstream.setFault({ kind: 'rateLimited429' });
    expect((await postChat()).headers.get('retry-after')).toBeNull();
  });

  test('loading503 reports the configured estimated_time and unknownModel names the requested model', async () => {
    upstream.setFault({ kind: 'loading503', estimatedTimeSeconds: 3.5 });
    expect(await (await postChat()).json()).toMatchObject({ estimated_time: 3.5, error: 'Model x is currently loading' });
    upstream.setFault({ kind: 'unknownModel' });
    const body = (await (await postChat({ model: 'acme/nope', messages: MESSAGES })).json()) as { error: { message: string } };
    expect(body.error.message).toContain("'acme/nope'");
  });

  test('flapping fails every Nth call since it was set, with error500 unless told otherwise', async () => {
    upstream.setFault({ kind: 'flapping', every: 3 });
    expect(await statusesOf(6)).toEqual([200, 200, 500, 200, 200, 500]);
    upstream.setFault({ kind: 'flapping', every: 2, failWith: { kind: 'rateLimited429' } });
    expect(await statusesOf(4)).toEqual([200, 429, 200, 429]);
  });

  test('sequence gives call i the i-th fault and repeats the last one', async () => {
    upstream.setFault({ kind: 'sequence', faults: [{ kind: 'error500' }, { kind: 'loading503' }, { kind: 'ok' }] });
    expect(await statusesOf(5)).toEqual([500, 503, 200, 200, 200]);
  });

  test('calls counts every chat request whatever the fault, and lastRequest keeps its headers and parsed body', async () => {
    upstream.setFault({ kind: 'sequence', faults: [{ kind: 'error500' }, { kind: 'malformed' }, { kind: 'ok' }] });
    await statusesOf(3);
    await fetch(`${upstream.url}/health`);
    expect(upstream.calls).toBe(3);
    expect(upstream.lastRequest?.headers['content-type']).toBe('application/json');
    expect(upstream.lastRequest?.body).toEqual({ model: 'x', messages: MESSAGES });
  });
});

describe('the real @huggingface/inference client accepts what the fake speaks', () => {
  test('it gets the answer in ok mode and sends the bearer token and the prompt upstream', async () => {
    const output = await askClient();
    expect(output.choices[0]?.message.content).toBe(`Answer: ${QUESTION}`);
    expect(upstream.lastRequest?.headers.authorization).toBe('Bearer hf_test_token');
    expect(JSON.stringify(upstream.lastRequest?.body)).toContain('Refunds within 30 days.');
  });

  test.each<[Fault, number, string]>([
    [{ kind: 'error500' }, 500, 'Failed to perform inference: Request failed during generation'],
    [{ kind: 'rateLimited429', retryAfterSeconds: 1 }, 429, 'Failed to perform inference: Model is overloaded'],
    [{ kind: 'badRequest' }, 400, 'Failed to perform inference: Input validation error'],
    [{ kind: 'loading503' }, 503, 'Failed to perform inference: Model x is currently loading'],
    [{ kind: 'unauthorized' }, 401, 'Failed to perform inference: Invalid credentials'],
    // a nested {error: {message}} is not read by the non-streaming path: only a generic message survives
    [{ kind: 'unknownModel' }, 400, 'Failed to perform inference: an HTTP error occurred when requesting the provider.'],
  ])('%o makes it throw InferenceClientProviderApiError with httpResponse.status %i', async (fault, status, message) => {
    upstream.setFault(fault);
    const error = await rejectionOf(askClient());
    expect(error).toBeInstanceOf(InferenceClientProviderApiError);
    expect(error.message).toContain(message);
    const { httpResponse } = error as InferenceClientProviderApiError;
    expect(httpResponse.status).toBe(status);
    expect(httpResponse.requestId).not.toBe(''); // the fake's x-request-id is surfaced
  });

  test('with its default retry_on_error it re-sends a 503 at once and without limit until something else comes', async () => {
    upstream.setFault({
      kind: 'sequence',
      faults: [{ kind: 'loading503' }, { kind: 'loading503' }, { kind: 'loading503' }, { kind: 'ok' }],
    });
    await expect(askClient({ retry: true })).resolves.toBeDefined();
    expect(upstream.calls).toBe(4);
  });

  test('hang plus an aborted signal rejects with AbortError and the held socket closes', async () => {
    upstream.setFault({ kind: 'hang' });
    const controller = new AbortController();
    const call = rejectionOf(askClient({ signal: controller.signal }));
    await upstream.waitForCalls(1);
    expect(upstream.inFlight).toBe(1);
    controller.abort();
    expect(await call).toMatchObject({ name: 'AbortError' }); // a DOMException, not an InferenceClientError
    await upstream.waitForInFlight(0, 1000);
  });

  // What each broken response turns into, for the error classifier: none is an InferenceClientError.
  test('reset makes it throw TypeError "fetch failed" with an ECONNRESET cause', async () => {
    upstream.setFault({ kind: 'reset' });
    const error = await rejectionOf(askClient());
    expect(error).toMatchObject({ name: 'TypeError', message: 'fetch failed' });
    expect(error.cause).toMatchObject({ code: 'ECONNRESET' });
  });

  test('malformed makes it throw a bare SyntaxError from JSON parsing, with no HTTP status attached', async () => {
    upstream.setFault({ kind: 'malformed' });
    const error = await rejectionOf(askClient());
    expect(error).toMatchObject({ name: 'SyntaxError', message: 'Unexpected end of JSON input' });
    expect(error).not.toHaveProperty('httpResponse');
  });

  test('truncated makes it throw TypeError "terminated" caused by an undici socket error', async () => {
    upstream.setFault({ kind: 'truncated' });
    const error = await rejectionOf(askClient());
    expect(error).toMatchObject({ name: 'TypeError', message: 'terminated' });
    expect(error.cause).toMatchObject({ code: 'UND_ERR_SOCKET' });
  });

  test('missingFields passes unchecked through endpointUrl mode but is rejected by the router-mode client', async () => {
    upstream.setFault({ kind: 'missingFields' });
    // endpointUrl selects the hf-inference helper, whose getResponse returns whatever JSON arrived
    await expect(askClient()).resolves.not.toHaveProperty('choices');
    // the auto-router helper checks the shape; its host is redirected here through the client's fetch option
    const toFake: typeof fetch = (input, init) => fetch(String(input).replace('https://router.huggingface.co', upstream.url), init);
    const routed = new InferenceClient('hf_test_token').chatCompletion({ model: 'x', messages: MESSAGES }, { fetch: toFake });
    const error = await rejectionOf(routed);
    expect(error).toBeInstanceOf(InferenceClientProviderOutputError);
    expect(error.message).toBe('Expected ChatCompletionOutput');
  });
});

describe('admin interface and lifecycle', () => {
  async function stats(): Promise<UpstreamStats> {
    return (await (await fetch(`${upstream.url}/__admin/stats`)).json()) as UpstreamStats;
  }

  test('PUT /__admin/fault switches the fault, GET /__admin/stats reports it, POST /__admin/reset restores ok', async () => {
    const fault: Fault = { kind: 'flapping', every: 2, failWith: { kind: 'unauthorized' } };
    const put = await fetch(`${upstream.url}/__admin/fault`, { method: 'PUT', body: JSON.stringify(fault) });
    expect(put.status).toBe(204);
    expect(await statusesOf(2)).toEqual([200, 401]);
    expect(await stats()).toMatchObject({ calls: 2, fault, inFlight: 0 }); // admin requests are not chat calls in flight
    expect((await stats()).openSockets).toBeGreaterThanOrEqual(1);
    expect((await fetch(`${upstream.url}/__admin/reset`, { method: 'POST' })).status).toBe(204);
    expect(await stats()).toMatchObject({ calls: 0, fault: { kind: 'ok' } });
  });

  test.each(['{"kind":"meltdown"}', '{"kind":"flapping"}', '{"kind":"sequence","faults":[{"kind":"ok"},{}]}', 'not json'])(
    'PUT /__admin/fault refuses %s with 400 and keeps the current fault',
    async (body) => {
      const put = await fetch(`${upstream.url}/__admin/fault`, { method: 'PUT', body });
      expect(put.status).toBe(400);
      expect(upstream.stats.fault).toEqual({ kind: 'ok' });
    },
  );

  test('waitForOpenSockets rejects naming the count while a hung socket is open and resolves once it is aborted', async () => {
    const own = await FakeHfUpstream.start(); // no pooled keep-alive sockets from other tests
    own.setFault({ kind: 'hang' });
    const controller = new AbortController();
    // node:http without an agent: unlike undici, it opens no spare connection after the abort
    request(`${own.url}/v1/chat/completions`, { method: 'POST', agent: false, signal: controller.signal })
      .on('error', () => undefined)
      .end('{}');
    try {
      await own.waitForCalls(1);
      await expect(own.waitForOpenSockets(0, 100)).rejects.toThrow('still 1 open sockets (wanted <= 0) after 100 ms');
      controller.abort();
      await own.waitForOpenSockets(0, 1000);
    } finally {
      await own.close();
    }
  });

  test('close() destroys a hung request so the client fails and no socket or timer stays open', async () => {
    const doomed = await FakeHfUpstream.start();
    doomed.setFault({ kind: 'hang', latencyMs: 60_000 });
    const call = rejectionOf(fetch(`${doomed.url}/v1/chat/completions`, { method: 'POST', body: '{}' }));
    await doomed.waitForCalls(1);
    await doomed.close();
    expect((await call).message).toBe('fetch failed');
    expect(doomed.openSockets).toBe(0);
  });

  test('main() listens on FAKE_HF_PORT and prints exactly one line with the url', async () => {
    const probe = await FakeHfUpstream.start();
    const freePort = new URL(probe.url).port;
    await probe.close();
    process.env['FAKE_HF_PORT'] = freePort;
    const write = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      const launched = await main();
      expect(launched.url).toBe(`http://127.0.0.1:${freePort}`);
      expect(write.mock.calls).toEqual([[`fake-hf-upstream listening on http://127.0.0.1:${freePort}\n`]]);
      await launched.close();
    } finally {
      write.mockRestore();
      delete process.env['FAKE_HF_PORT'];
    }
  });
});
