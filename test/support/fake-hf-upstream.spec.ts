import { type IncomingMessage, request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { jest } from '@jest/globals';
import { InferenceClient, InferenceClientProviderApiError, InferenceClientProviderOutputError } from '@huggingface/inference';
import { FakeHfUpstream, main, type Fault, type StreamFault, type UpstreamStats } from './fake-hf-upstream.js';
import {
  describeEventStreamErrors,
  describeSchemaErrors,
  eventStreamData,
  validateUpstreamBody,
  type UpstreamSchemaName,
} from './upstream-schema.js';

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

  test('raw replays its status, JSON body and headers as given, to a streaming request too', async () => {
    const body = { object: 'error', message: 'too large', type: 'BadRequestError', param: null, code: 400 };
    upstream.setFault({ kind: 'raw', status: 400, body, headers: { ratelimit: '"api";r=489;t=189' } });
    for (const request of [
      { model: 'x', messages: MESSAGES },
      { model: 'x', messages: MESSAGES, stream: true },
    ]) {
      const response = await postChat(request);
      expect(response.status).toBe(400);
      expect(response.headers.get('content-type')).toBe('application/json');
      expect(response.headers.get('ratelimit')).toBe('"api";r=489;t=189');
      expect(await response.json()).toEqual(body);
    }
  });

  test('raw sends a string body as plain text, and no body at all when it has none', async () => {
    upstream.setFault({ kind: 'raw', status: 502, body: 'Bad Gateway' });
    const text = await postChat();
    expect([text.status, text.headers.get('content-type'), await text.text()]).toEqual([502, 'text/plain; charset=utf-8', 'Bad Gateway']);
    upstream.setFault({ kind: 'raw', status: 503, headers: { 'retry-after': '4' } });
    const empty = await postChat();
    expect([empty.status, empty.headers.get('retry-after'), await empty.text()]).toEqual([503, '4', '']);
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

  test('GET /__admin/call-times?since= lists when the chat calls at or after that time arrived, until a reset', async () => {
    const before = Date.now();
    await statusesOf(2);
    const after = Date.now();
    const { times } = (await (await fetch(`${upstream.url}/__admin/call-times?since=${before}`)).json()) as { times: number[] };
    expect(times).toHaveLength(2);
    expect(times[0]).toBeGreaterThanOrEqual(before);
    expect(times[1]).toBeGreaterThanOrEqual(times[0] ?? Number.NaN);
    expect(times[1]).toBeLessThanOrEqual(after);
    expect(upstream.callTimesSince(after + 1)).toEqual([]);
    await fetch(`${upstream.url}/__admin/reset`, { method: 'POST' });
    expect(upstream.callTimesSince()).toEqual([]);
  });

  test.each([
    '{"kind":"meltdown"}',
    '{"kind":"flapping"}',
    '{"kind":"sequence","faults":[{"kind":"ok"},{}]}',
    'not json',
    '{"kind":"stallMidStream","afterTokens":-1}',
    '{"kind":"cutMidStream","afterTokens":1.5}',
    '{"kind":"slowTokens","tokenIntervalMs":"fast"}',
    '{"kind":"ok","keepAliveMs":-5}',
    '{"kind":"errorMidStream","errorShape":"xml"}',
    '{"kind":"sequence","faults":[{"kind":"malformedChunk","afterTokens":null}]}',
    '{"kind":"raw"}',
    '{"kind":"raw","status":99}',
    '{"kind":"raw","status":503,"headers":{"retry-after":5}}',
  ])('PUT /__admin/fault refuses %s with 400 and keeps the current fault', async (body) => {
    const put = await fetch(`${upstream.url}/__admin/fault`, { method: 'PUT', body });
    expect(put.status).toBe(400);
    expect(upstream.stats.fault).toEqual({ kind: 'ok' });
  });

  test('PUT /__admin/fault takes every stream fault with its options, and the stats report the stream counters until a reset', async () => {
    const faults: StreamFault[] = [
      { kind: 'slowTokens', tokenIntervalMs: 5, answer: 'a b' },
      { kind: 'stallBeforeFirstToken', latencyMs: 1, keepAliveMs: 1000 },
      { kind: 'stallMidStream', afterTokens: 0 },
      { kind: 'cutMidStream', afterTokens: 3 },
      { kind: 'errorMidStream', afterTokens: 1, error: 'x', errorType: 'y', errorShape: 'errorResponse' },
      { kind: 'malformedChunk', afterTokens: 2 },
    ];
    for (const fault of faults) {
      const put = await fetch(`${upstream.url}/__admin/fault`, { method: 'PUT', body: JSON.stringify(fault) });
      expect(put.status).toBe(204);
      expect((await stats()).fault).toEqual(fault);
    }
    await fetch(`${upstream.url}/__admin/fault`, { method: 'PUT', body: JSON.stringify(faults[0]) });
    await (await postStream()).text();
    expect(await stats()).toMatchObject({
      streams: 1,
      tokensWritten: 2,
      streamsAbortedByClient: 0,
      lastStream: { tokens: 2, outcome: 'done' },
    });
    await fetch(`${upstream.url}/__admin/reset`, { method: 'POST' });
    expect(await stats()).toMatchObject({ streams: 0, tokensWritten: 0, streamsAbortedByClient: 0, lastStream: null });
  });

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

// ---- Streaming: a request whose body has "stream": true ----

const ANSWER = `Answer: ${QUESTION}`;
/** How the fake splits ANSWER into tokens: each word with the whitespace after it. */
const ANSWER_TOKENS = ['Answer: ', 'What ', 'is ', 'the ', 'refund ', 'policy ', 'for ', 'annual ', 'plans?'];
const STREAM_ERROR = 'Request failed during generation: Server error: CUDA out of memory';

/** What a test reads of a chunk; the full shape is checked against the spec's ChatCompletionChunk. */
interface StreamChunk {
  id: string;
  choices: Array<{ delta: { role: string; content?: string }; finish_reason?: string | null }>;
  usage?: unknown;
}

function streamBody(extra: object = {}): object {
  return { model: 'x', messages: MESSAGES, stream: true, ...extra };
}

function postStream(body: object = streamBody(), signal?: AbortSignal): Promise<Response> {
  return fetch(`${upstream.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  });
}

/** The real client's stream, read as the app reads it. */
function askStream(signal?: AbortSignal, url = upstream.url): AsyncGenerator<StreamChunk> {
  const client = new InferenceClient(undefined, { endpointUrl: url });
  return client.chatCompletionStream({ model: 'x', messages: MESSAGES, max_tokens: 64 }, { signal, retry_on_error: false });
}

interface StreamRead {
  chunks: StreamChunk[];
  /** Date.now() when each chunk came out of the client. */
  times: number[];
  error?: Caught;
}

async function readStream(stream: AsyncIterable<StreamChunk>): Promise<StreamRead> {
  const read: StreamRead = { chunks: [], times: [] };
  try {
    for await (const chunk of stream) {
      read.chunks.push(chunk);
      read.times.push(Date.now());
    }
  } catch (error) {
    if (!isCaught(error)) throw error;
    read.error = error;
  }
  return read;
}

/** The non-empty contents, in order: the tokens (the role and finish chunks carry ''). */
function tokensOf(chunks: StreamChunk[]): string[] {
  return chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').filter((content) => content !== '');
}

function expectValidChunks(chunks: unknown[]): void {
  for (const chunk of chunks) expect(describeSchemaErrors(validateUpstreamBody('ChatCompletionChunk', chunk))).toBe('');
}

/** Whatever the body delivers within `ms`; the read left pending is the caller's to abort. */
async function textWithin(response: Response, ms: number): Promise<string> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const deadline = Date.now() + ms;
  let text = '';
  for (;;) {
    const next = await Promise.race([reader.read(), sleep(Math.max(0, deadline - Date.now()), 'timeout' as const)]);
    if (next === 'timeout' || next.done) return text;
    text += decoder.decode(next.value as Uint8Array, { stream: true });
  }
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const settled = promise.then(
    () => true,
    () => true,
  );
  return Promise.race([settled, sleep(ms, false)]);
}

function gaps(times: number[]): number[] {
  return times.slice(1).map((time, i) => time - (times[i] ?? time));
}

describe('streaming: a "stream": true request gets the answer as TGI streams it', () => {
  test('ok: 200 text/event-stream, a role chunk, one chunk per word, a stop chunk, then [DONE], all valid ChatCompletionChunks', async () => {
    const response = await postStream();
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    expect(response.headers.get('content-length')).toBeNull(); // chunked: sent as it is generated
    const text = await response.text();
    expect(describeEventStreamErrors(text)).toBe('');
    expect(text).toMatch(/^data: \{.*\}\n\n/);
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    const payloads = eventStreamData(text);
    const chunks = payloads.slice(0, -1).map((data) => JSON.parse(data) as StreamChunk & { model: string; object: string });
    expectValidChunks(chunks);
    expect(chunks.map((chunk) => chunk.choices[0]?.delta)).toEqual([
      { role: 'assistant', content: '' },
      ...ANSWER_TOKENS.map((content) => ({ role: 'assistant', content })),
      { role: 'assistant', content: '' },
    ]);
    expect(chunks.map((chunk) => chunk.choices[0]?.finish_reason)).toEqual([...ANSWER_TOKENS.map(() => null), null, 'stop']);
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    expect(chunks.every((chunk) => chunk.model === 'x' && chunk.object === 'chat.completion.chunk' && chunk.usage === null)).toBe(true);
    expect(upstream.stats).toMatchObject({
      streams: 1,
      tokensWritten: 9,
      streamsAbortedByClient: 0,
      lastStream: { tokens: 9, outcome: 'done' },
    });
    await upstream.waitForInFlight(0);
    expect(upstream.openStreams).toBe(0);
  });

  test('stream_options.include_usage adds a chunk with empty choices and the same usage as a non-streamed answer, before [DONE]', async () => {
    const payloads = eventStreamData(await (await postStream(streamBody({ stream_options: { include_usage: true } }))).text());
    expect(payloads.at(-1)).toBe('[DONE]');
    const usageChunk = JSON.parse(payloads.at(-2) ?? '') as StreamChunk;
    expectValidChunks([usageChunk]);
    expect(usageChunk.choices).toEqual([]);
    expect(validateUpstreamBody('Usage', usageChunk.usage)).toBeNull();
    const complete = (await (await postChat()).json()) as { usage: unknown };
    expect(usageChunk.usage).toEqual(complete.usage);
    expect(JSON.parse(payloads.at(-3) ?? '')).toMatchObject({ choices: [{ finish_reason: 'stop' }], usage: null });
  });

  test('the real client reads it: chatCompletionStream yields every chunk, the contents join into the answer', async () => {
    const { chunks, error } = await readStream(askStream());
    expect(error).toBeUndefined();
    expectValidChunks(chunks);
    expect(chunks).toHaveLength(ANSWER_TOKENS.length + 2);
    expect(chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('')).toBe(ANSWER);
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop');
    expect(upstream.lastRequest?.body).toMatchObject({ model: 'x', stream: true, max_tokens: 64 });
    expect(upstream.lastRequest?.headers.authorization).toBeUndefined(); // no token given
    await upstream.waitForInFlight(0);
    expect(upstream.streamsAbortedByClient).toBe(0);
  });

  test('tokenIntervalMs paces the tokens: the client gets each one as it is written, not all at the end', async () => {
    upstream.setFault({ kind: 'ok', tokenIntervalMs: 40 });
    const { chunks, times, error } = await readStream(askStream());
    expect(error).toBeUndefined();
    expect(tokensOf(chunks)).toEqual(ANSWER_TOKENS);
    // role chunk, then 9 tokens 40 ms apart; the stop chunk follows the last token at once
    for (const gap of gaps(times).slice(0, ANSWER_TOKENS.length)) expect(gap).toBeGreaterThanOrEqual(35);
    expect((times.at(-2) ?? 0) - (times[1] ?? 0)).toBeGreaterThanOrEqual(8 * 35);
  });

  test('slowTokens is ok at 250 ms a token by default: slow but steady', async () => {
    upstream.setFault({ kind: 'slowTokens', answer: 'one two three' });
    const { chunks, times, error } = await readStream(askStream());
    expect(error).toBeUndefined();
    expect(tokensOf(chunks)).toEqual(['one ', 'two ', 'three']);
    for (const gap of gaps(times).slice(0, 3)) {
      expect(gap).toBeGreaterThanOrEqual(240);
      expect(gap).toBeLessThan(750);
    }
  });

  test('keepAliveMs writes ":" comments while the stream waits; the raw stream stays valid and the client does not see them', async () => {
    upstream.setFault({ kind: 'ok', answer: 'one two three', tokenIntervalMs: 100, keepAliveMs: 20 });
    const text = await (await postStream()).text();
    expect(text.split('\n').filter((line) => line === ':').length).toBeGreaterThanOrEqual(6);
    expect(describeEventStreamErrors(text)).toBe('');
    expect(eventStreamData(text)).toHaveLength(6); // role, 3 tokens, stop, [DONE]
    const { chunks, error } = await readStream(askStream());
    expect(error).toBeUndefined();
    expect(chunks).toHaveLength(5);
  });

  test('backpressure: while the reader reads nothing the fake stops writing (it awaits drain), and it finishes once the reader reads', async () => {
    const words = 2000;
    upstream.setFault({ kind: 'ok', answer: `${'x'.repeat(16_000)} `.repeat(words) }); // ~32 MB, far above the socket buffers
    const req = request(`${upstream.url}/v1/chat/completions`, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json' },
    });
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      req.on('response', resolve).on('error', reject).end(JSON.stringify(streamBody()));
    });
    response.pause();
    try {
      let written = -1;
      while (written !== upstream.tokensWritten) {
        written = upstream.tokensWritten;
        await sleep(150);
      }
      expect(written).toBeGreaterThan(0);
      expect(written).toBeLessThan(words / 2);
      expect(upstream.lastStream).toEqual({ tokens: written, outcome: 'open' });
      let bytes = 0;
      response.on('data', (chunk: Buffer) => (bytes += chunk.length));
      const ended = new Promise((resolve) => response.on('end', resolve));
      response.resume();
      await ended;
      expect(upstream.lastStream).toEqual({ tokens: words, outcome: 'done' });
      expect(bytes).toBeGreaterThan(words * 16_000);
    } finally {
      req.destroy();
    }
  });
});

describe('stream faults break a stream the way a real upstream does', () => {
  test('ok aborted by its client half-way: the fake stops writing and counts the stream as abortedByClient', async () => {
    upstream.setFault({ kind: 'ok', tokenIntervalMs: 30 });
    const controller = new AbortController();
    const read = readStream(askStream(controller.signal));
    await upstream.waitForTokens(3);
    controller.abort();
    const { chunks, error } = await read;
    expect(error).toMatchObject({ name: 'AbortError' });
    await upstream.waitForStreamsAbortedByClient(1);
    const { lastStream } = upstream.stats;
    expect(lastStream?.outcome).toBe('abortedByClient');
    expect(lastStream?.tokens).toBeLessThan(ANSWER_TOKENS.length);
    expect(tokensOf(chunks).length).toBeLessThanOrEqual(lastStream?.tokens ?? 0);
    await sleep(100);
    expect(upstream.tokensWritten).toBe(lastStream?.tokens); // nothing written after the abort
  });

  test('waitForTokens and waitForStreamsAbortedByClient reject naming the count when it is not reached', async () => {
    await expect(upstream.waitForTokens(1, 50)).rejects.toThrow('still 0 tokens written (wanted >= 1) after 50 ms');
    await expect(upstream.waitForStreamsAbortedByClient(1, 50)).rejects.toThrow(
      'still 0 streams aborted by their client (wanted >= 1) after 50 ms',
    );
  });

  test('stallBeforeFirstToken: 200 and the event-stream headers, then nothing, until the client aborts; the fake counts the abort', async () => {
    upstream.setFault({ kind: 'stallBeforeFirstToken' });
    const controller = new AbortController();
    const response = await postStream(streamBody(), controller.signal);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    expect(await textWithin(response, 150)).toBe('');
    expect(upstream.stats).toMatchObject({
      inFlight: 1,
      openStreams: 1,
      streamsAbortedByClient: 0,
      lastStream: { tokens: 0, outcome: 'open' },
    });
    controller.abort();
    await upstream.waitForStreamsAbortedByClient(1);
    expect(upstream.lastStream).toEqual({ tokens: 0, outcome: 'abortedByClient' });
    await upstream.waitForInFlight(0);
    expect(upstream.openStreams).toBe(0);
  });

  test('stallBeforeFirstToken through the client: the first next() stays pending, an abort rejects it with AbortError and closes the socket', async () => {
    upstream.setFault({ kind: 'stallBeforeFirstToken' });
    const controller = new AbortController();
    const first = askStream(controller.signal).next();
    await upstream.waitForCalls(1);
    expect(await settlesWithin(first, 150)).toBe(false);
    expect(upstream.openStreams).toBe(1); // the headers went out: the stream is open, just silent
    controller.abort();
    expect(await rejectionOf(first)).toMatchObject({ name: 'AbortError', message: 'This operation was aborted' });
    await upstream.waitForStreamsAbortedByClient(1);
    await upstream.waitForInFlight(0);
  });

  test('stallMidStream: the client gets the role chunk and afterTokens tokens, then waits; its abort reaches the fake', async () => {
    upstream.setFault({ kind: 'stallMidStream', afterTokens: 3 });
    const controller = new AbortController();
    const stream = askStream(controller.signal);
    const received: StreamChunk[] = [];
    for (let i = 0; i < 4; i += 1) received.push((await stream.next()).value as StreamChunk);
    expectValidChunks(received);
    expect(tokensOf(received)).toEqual(ANSWER_TOKENS.slice(0, 3));
    const next = stream.next();
    expect(await settlesWithin(next, 150)).toBe(false);
    expect(upstream.lastStream).toEqual({ tokens: 3, outcome: 'open' });
    controller.abort();
    expect(await rejectionOf(next)).toMatchObject({ name: 'AbortError' });
    await upstream.waitForStreamsAbortedByClient(1);
    expect(upstream.lastStream).toEqual({ tokens: 3, outcome: 'abortedByClient' });
  });

  test('stallMidStream with keepAliveMs: comments keep coming but no token, so only a token-based idle timer notices the stall', async () => {
    upstream.setFault({ kind: 'stallMidStream', afterTokens: 1, keepAliveMs: 25 });
    const controller = new AbortController();
    const response = await postStream(streamBody(), controller.signal);
    const text = await textWithin(response, 200);
    controller.abort();
    expect(text.split('\n').filter((line) => line === ':').length).toBeGreaterThanOrEqual(4);
    expect(eventStreamData(text)).toHaveLength(2); // the role chunk and one token
    await upstream.waitForStreamsAbortedByClient(1);
  });

  test('cutMidStream: the tokens before the cut arrive, then the client throws TypeError "terminated"; no client abort is counted', async () => {
    upstream.setFault({ kind: 'cutMidStream', afterTokens: 2 });
    const { chunks, error } = await readStream(askStream());
    expectValidChunks(chunks);
    expect(tokensOf(chunks)).toEqual(ANSWER_TOKENS.slice(0, 2));
    expect(error).toMatchObject({ name: 'TypeError', message: 'terminated' });
    expect(error?.cause).toMatchObject({ code: 'UND_ERR_SOCKET' });
    expect(error).not.toBeInstanceOf(InferenceClientProviderApiError);
    expect(upstream.lastStream).toEqual({ tokens: 2, outcome: 'cut' });
    expect(upstream.streamsAbortedByClient).toBe(0);
  });

  test('errorMidStream: after the tokens, the error event TGI chat streams send inside the 200, then [DONE]', async () => {
    upstream.setFault({ kind: 'errorMidStream', afterTokens: 2 });
    const response = await postStream();
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(describeEventStreamErrors(text)).toBe('');
    const payloads = eventStreamData(text);
    expect(payloads).toHaveLength(5); // role, 2 tokens, error, [DONE]
    const event: unknown = JSON.parse(payloads[3] ?? '');
    expect(event).toEqual({ error: { message: STREAM_ERROR, http_status_code: 422 } });
    expect(validateUpstreamBody('TgiChatStreamError', event)).toBeNull();
    expect(validateUpstreamBody('ErrorResponse', event)).not.toBeNull();
    expect(payloads[4]).toBe('[DONE]');
    expect(upstream.lastStream).toEqual({ tokens: 2, outcome: 'done' });
  });

  test('errorMidStream through the client: the tokens, then InferenceClientProviderApiError with status 200 and the event as body', async () => {
    upstream.setFault({ kind: 'errorMidStream', afterTokens: 2 });
    const { chunks, error } = await readStream(askStream());
    expect(tokensOf(chunks)).toEqual(ANSWER_TOKENS.slice(0, 2));
    expect(error).toBeInstanceOf(InferenceClientProviderApiError);
    expect(error?.message).toBe(`Failed to perform inference: an occurred while streaming the response: ${STREAM_ERROR}`);
    const { httpResponse } = error as InferenceClientProviderApiError;
    expect(httpResponse.status).toBe(200);
    expect(httpResponse.body).toEqual({ error: { message: STREAM_ERROR, http_status_code: 422 } });
    expect(httpResponse.requestId).not.toBe('');
  });

  test('errorMidStream with errorShape errorResponse sends the spec ErrorResponse {error, error_type}, which the client reads too', async () => {
    const fault: StreamFault = {
      kind: 'errorMidStream',
      afterTokens: 0,
      error: 'Model is overloaded',
      errorType: 'overloaded',
      errorShape: 'errorResponse',
    };
    upstream.setFault(fault);
    const payloads = eventStreamData(await (await postStream()).text());
    expect(payloads).toHaveLength(3); // role, error, [DONE]
    const event: unknown = JSON.parse(payloads[1] ?? '');
    expect(event).toEqual({ error: 'Model is overloaded', error_type: 'overloaded' });
    expect(validateUpstreamBody('ErrorResponse', event)).toBeNull();
    const { chunks, error } = await readStream(askStream());
    expect(tokensOf(chunks)).toEqual([]);
    expect(error?.message).toBe('Failed to perform inference: an occurred while streaming the response: Model is overloaded');
    expect((error as InferenceClientProviderApiError).httpResponse.body).toEqual(event);
  });

  test('malformedChunk: one data line is not JSON and the stream goes on to [DONE]; the validator reports that line', async () => {
    upstream.setFault({ kind: 'malformedChunk', afterTokens: 2 });
    const text = await (await postStream()).text();
    expect(describeEventStreamErrors(text)).toMatch(/^event 3: not JSON: \{"id":"chatcmpl-broken"/);
    const payloads = eventStreamData(text);
    expect(() => JSON.parse(payloads[3] ?? '') as unknown).toThrow(SyntaxError);
    const rest = [...payloads.slice(0, 3), ...payloads.slice(4, -1)].map((data) => JSON.parse(data) as StreamChunk);
    expectValidChunks(rest);
    expect(tokensOf(rest)).toEqual(ANSWER_TOKENS);
    expect(upstream.lastStream).toEqual({ tokens: 9, outcome: 'done' });
  });

  test('malformedChunk through the client: the good tokens, then a bare SyntaxError from JSON.parse with no HTTP status', async () => {
    upstream.setFault({ kind: 'malformedChunk', afterTokens: 2 });
    const { chunks, error } = await readStream(askStream());
    expect(tokensOf(chunks)).toEqual(ANSWER_TOKENS.slice(0, 2));
    expect(error).toMatchObject({ name: 'SyntaxError' });
    expect(error?.message).toMatch(/JSON/);
    expect(error).not.toHaveProperty('httpResponse');
  });

  test('after the client throws mid-stream the upstream response is not cancelled: it stays open until the signal is aborted', async () => {
    upstream.setFault({ kind: 'malformedChunk', afterTokens: 1, tokenIntervalMs: 100, answer: 'a b c d e f g h i j k l m n o p' });
    const controller = new AbortController();
    const { error } = await readStream(askStream(controller.signal));
    expect(error).toMatchObject({ name: 'SyntaxError' });
    await sleep(250);
    expect(upstream.lastStream?.outcome).toBe('open'); // the fake is still writing tokens to the unread body
    expect(upstream.openStreams).toBe(1);
    controller.abort();
    await upstream.waitForStreamsAbortedByClient(1);
    expect(upstream.lastStream?.outcome).toBe('abortedByClient');
  });

  test('a mid-stream fault always strikes before the stop chunk, even with afterTokens past the answer', async () => {
    upstream.setFault({ kind: 'cutMidStream', afterTokens: 50 });
    const { chunks, error } = await readStream(askStream());
    expect(tokensOf(chunks)).toEqual(ANSWER_TOKENS);
    expect(chunks.some((chunk) => chunk.choices[0]?.finish_reason === 'stop')).toBe(false);
    expect(error).toMatchObject({ message: 'terminated' });
  });

  test('sequence and flapping pick stream faults per call like any other', async () => {
    upstream.setFault({ kind: 'sequence', faults: [{ kind: 'cutMidStream', afterTokens: 1 }, { kind: 'errorMidStream' }, { kind: 'ok' }] });
    const outcomes = [];
    for (let i = 0; i < 3; i += 1) outcomes.push((await readStream(askStream())).error?.name ?? 'complete');
    expect(outcomes).toEqual(['TypeError', 'ProviderApiError', 'complete']);
    expect(upstream.streams).toBe(3);
  });

  test('close() ends a stalled stream: the client fails with "terminated" and the stream is serverClosed, not a client abort', async () => {
    const doomed = await FakeHfUpstream.start();
    doomed.setFault({ kind: 'stallMidStream', afterTokens: 1 });
    const stream = askStream(undefined, doomed.url);
    const received = [(await stream.next()).value as StreamChunk, (await stream.next()).value as StreamChunk];
    expect(tokensOf(received)).toEqual(ANSWER_TOKENS.slice(0, 1));
    const next = stream.next();
    await doomed.close();
    const error = await rejectionOf(next);
    expect(error).toMatchObject({ name: 'TypeError', message: 'terminated' });
    expect(error.cause).toMatchObject({ code: 'UND_ERR_SOCKET' });
    expect(doomed.stats).toMatchObject({ streamsAbortedByClient: 0, openStreams: 0, lastStream: { tokens: 1, outcome: 'serverClosed' } });
  });
});

describe('stream faults and other requests', () => {
  test('slowTokens answers a non-streaming request at once, as ok: tokenIntervalMs paces only streams', async () => {
    upstream.setFault({ kind: 'slowTokens', tokenIntervalMs: 1000 });
    const startedAt = Date.now();
    const response = await postChat();
    const body: unknown = await response.json();
    expect(Date.now() - startedAt).toBeLessThan(500);
    expect(response.status).toBe(200);
    expect(validateUpstreamBody('ChatCompletion', body)).toBeNull();
    expect(upstream.streams).toBe(0);
  });

  test('errorMidStream answers a non-streaming request as error500, with its own error and type', async () => {
    upstream.setFault({ kind: 'errorMidStream', error: 'Request failed during generation: boom', errorType: 'generation' });
    const response = await postChat();
    expect(response.status).toBe(500);
    const body: unknown = await response.json();
    expect(body).toEqual({ error: 'Request failed during generation: boom', error_type: 'generation' });
    expect(validateUpstreamBody('ErrorResponse', body)).toBeNull();
  });

  test('malformedChunk answers a non-streaming request as malformed: 200 and a body that is not JSON', async () => {
    upstream.setFault({ kind: 'malformedChunk' });
    const response = await postChat();
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('{"id": "x", "choices": [');
  });

  test('cutMidStream answers a non-streaming request as reset', async () => {
    upstream.setFault({ kind: 'cutMidStream' });
    const error = await rejectionOf(postChat());
    expect(error).toMatchObject({ name: 'TypeError', message: 'fetch failed' });
    expect(error.cause).toMatchObject({ code: 'ECONNRESET' });
  });

  test.each<StreamFault>([{ kind: 'stallBeforeFirstToken' }, { kind: 'stallMidStream' }])(
    '%o answers a non-streaming request as hang: nothing until the client aborts',
    async (fault) => {
      upstream.setFault(fault);
      const controller = new AbortController();
      const body = JSON.stringify({ model: 'x', messages: MESSAGES, stream: false });
      const call = rejectionOf(fetch(`${upstream.url}/v1/chat/completions`, { method: 'POST', body, signal: controller.signal }));
      await upstream.waitForCalls(1);
      expect(await settlesWithin(call, 150)).toBe(false);
      expect(upstream.inFlight).toBe(1);
      expect(upstream.streams).toBe(0);
      controller.abort();
      expect(await call).toMatchObject({ name: 'AbortError' });
      await upstream.waitForInFlight(0, 1000);
    },
  );

  test.each<[Fault, number, string]>([
    [{ kind: 'error500' }, 500, `Failed to perform inference: ${STREAM_ERROR}`],
    [{ kind: 'rateLimited429' }, 429, 'Failed to perform inference: Model is overloaded'],
    [{ kind: 'loading503' }, 503, 'Failed to perform inference: Model x is currently loading'],
    // unlike the non-streaming path, the streaming one reads the router's nested {error: {message}}
    [{ kind: 'unknownModel' }, 400, "Failed to perform inference: The requested model 'x' is not supported"],
  ])(
    '%o answers a streaming request with its usual status and JSON body: the client throws before any chunk',
    async (fault, status, message) => {
      upstream.setFault(fault);
      const { chunks, error } = await readStream(askStream());
      expect(chunks).toEqual([]);
      expect(error).toBeInstanceOf(InferenceClientProviderApiError);
      expect(error?.message).toContain(message);
      expect((error as InferenceClientProviderApiError).httpResponse.status).toBe(status);
      expect(upstream.streams).toBe(0);
    },
  );

  test('malformed answers a streaming request with its JSON content type, which the client refuses as no event stream', async () => {
    upstream.setFault({ kind: 'malformed' });
    const { error } = await readStream(askStream());
    expect(error).toBeInstanceOf(InferenceClientProviderApiError);
    expect(error?.message).toBe(
      'Failed to perform inference: server does not support event stream content type, it returned application/json',
    );
  });
});

// ---- Several model targets behind one fake: faults and counts per request-body `model` ----

describe('several models through one fake: a fault set for a model overrides the default for its calls', () => {
  const askModel = (model: string, extra: object = {}): Promise<Response> => postChat({ model, messages: MESSAGES, ...extra });

  async function statusesFor(models: string[]): Promise<number[]> {
    const statuses: number[] = [];
    for (const model of models) {
      const response = await askModel(model);
      await response.arrayBuffer();
      statuses.push(response.status);
    }
    return statuses;
  }

  test('a model with a fault of its own gets it, every other model gets the default, and calls are counted per model', async () => {
    upstream.setFault({ kind: 'error500' }, { model: 'org/a' });
    upstream.setFault({ kind: 'ok', answer: 'From b.' }, { model: 'org/b' });

    expect(await statusesFor(['org/a', 'org/b', 'org/c', 'org/a'])).toEqual([500, 200, 200, 500]);
    const b = (await (await askModel('org/b')).json()) as { model: string; choices: Array<{ message: { content: string } }> };

    expect(b.model).toBe('org/b');
    expect(b.choices[0]?.message.content).toBe('From b.');
    expect([upstream.callsFor('org/a'), upstream.callsFor('org/b'), upstream.callsFor('org/c'), upstream.callsFor('org/d')]).toEqual([
      2, 2, 1, 0,
    ]);
    expect(upstream.calls).toBe(5);
    expect(upstream.stats.fault).toEqual({ kind: 'ok' }); // the default is untouched
  });

  test('a request naming no model counts as model tgi, as its answer names it', async () => {
    upstream.setFault({ kind: 'unauthorized' }, { model: 'tgi' });
    expect((await postChat({ messages: MESSAGES })).status).toBe(401);
    expect(upstream.callsFor('tgi')).toBe(1);
  });

  test("a model's sequence counts that model's calls only, and the default's sequence the calls it served", async () => {
    upstream.setFault({ kind: 'sequence', faults: [{ kind: 'error500' }, { kind: 'ok' }] });
    upstream.setFault({ kind: 'sequence', faults: [{ kind: 'badRequest' }, { kind: 'loading503' }, { kind: 'ok' }] }, { model: 'org/a' });

    expect(await statusesFor(['org/a', 'org/b', 'org/a', 'org/b', 'org/a', 'org/a'])).toEqual([400, 500, 503, 200, 200, 200]);
  });

  test('setting the default again keeps the per-model faults; setting a model again restarts its own count', async () => {
    upstream.setFault({ kind: 'flapping', every: 2 }, { model: 'org/a' });
    expect(await statusesFor(['org/a', 'org/a', 'org/a'])).toEqual([200, 500, 200]);
    upstream.setFault({ kind: 'forbidden' });
    upstream.setFault({ kind: 'flapping', every: 2 }, { model: 'org/a' });
    expect(await statusesFor(['org/a', 'org/a', 'org/b'])).toEqual([200, 500, 403]);
  });

  test('reset() clears every per-model fault and count', async () => {
    upstream.setFault({ kind: 'error500' }, { model: 'org/a' });
    await statusesFor(['org/a', 'org/b']);
    upstream.reset();
    expect(upstream.callsFor('org/a')).toBe(0);
    expect(upstream.stats.models).toEqual({});
    expect(await statusesFor(['org/a'])).toEqual([200]);
    expect(upstream.statsFor('org/a')).toEqual({ calls: 1, inFlight: 0, abortedByClient: 0, fault: { kind: 'ok' } });
  });

  test('stream faults apply per model too: one model streams its answer while another stalls before its first token', async () => {
    upstream.setFault({ kind: 'stallBeforeFirstToken' }, { model: 'org/a' });
    const controller = new AbortController();
    const stalled = await postStream(streamBody({ model: 'org/a' }), controller.signal);
    expect(await textWithin(stalled, 150)).toBe('');
    const streamed = await (await postStream(streamBody({ model: 'org/b' }))).text();
    expect(eventStreamData(streamed).at(-1)).toBe('[DONE]');
    expect(upstream.statsFor('org/a')).toMatchObject({ calls: 1, inFlight: 1 });
    expect(upstream.statsFor('org/b')).toMatchObject({ calls: 1, inFlight: 0 });
    controller.abort();
    await upstream.waitForAbortedByClient(1, { model: 'org/a' });
  });

  test("PUT /__admin/fault?model= sets that model's fault and GET /__admin/stats reports every model's counts and fault", async () => {
    const fault: Fault = { kind: 'rateLimited429', retryAfterSeconds: 3 };
    const put = await fetch(`${upstream.url}/__admin/fault?model=${encodeURIComponent('org/a')}`, {
      method: 'PUT',
      body: JSON.stringify(fault),
    });
    expect(put.status).toBe(204);
    const refused = await fetch(`${upstream.url}/__admin/fault?model=org/a`, { method: 'PUT', body: '{"kind":"meltdown"}' });
    expect(refused.status).toBe(400);
    expect(await statusesFor(['org/a', 'org/b'])).toEqual([429, 200]);

    const stats = (await (await fetch(`${upstream.url}/__admin/stats`)).json()) as UpstreamStats;

    expect(stats.fault).toEqual({ kind: 'ok' });
    expect(stats.models).toEqual({
      'org/a': { calls: 1, inFlight: 0, abortedByClient: 0, fault },
      'org/b': { calls: 1, inFlight: 0, abortedByClient: 0, fault: { kind: 'ok' } },
    });
  });
});

describe('client aborts are recorded for every chat request, streamed or not, per model', () => {
  test('a hung non-streaming call its client gives up on counts as aborted by its client, for its model only', async () => {
    upstream.setFault({ kind: 'hang' }, { model: 'org/a' });
    const controller = new AbortController();
    const call = rejectionOf(postChatWith({ model: 'org/a', messages: MESSAGES }, controller.signal));
    await upstream.waitForCallsFor('org/a', 1);
    await (await postChat({ model: 'org/b', messages: MESSAGES })).arrayBuffer();
    expect(upstream.statsFor('org/a')).toMatchObject({ inFlight: 1, abortedByClient: 0 });

    controller.abort();
    expect(await call).toMatchObject({ name: 'AbortError' });
    await upstream.waitForAbortedByClient(1, { model: 'org/a' });

    expect(upstream.statsFor('org/a')).toMatchObject({ calls: 1, inFlight: 0, abortedByClient: 1 });
    expect(upstream.statsFor('org/b')).toMatchObject({ calls: 1, inFlight: 0, abortedByClient: 0 });
    expect(upstream.abortedByClient).toBe(1);
    expect(upstream.streamsAbortedByClient).toBe(0); // it was no stream
  });

  test('a call its client aborts during the fault latency counts too, whatever fault was to follow', async () => {
    upstream.setFault({ kind: 'reset', latencyMs: 5_000 });
    const controller = new AbortController();
    const call = rejectionOf(postChatWith({ model: 'x', messages: MESSAGES }, controller.signal));
    await upstream.waitForCalls(1);
    controller.abort();
    await call;
    await upstream.waitForAbortedByClient(1, { model: 'x' });
  });

  test('a stalled stream its client aborts counts both as a stream and as a request aborted by its client', async () => {
    upstream.setFault({ kind: 'stallBeforeFirstToken' });
    const controller = new AbortController();
    const response = await postStream(streamBody(), controller.signal);
    expect(await textWithin(response, 100)).toBe('');
    controller.abort();
    await upstream.waitForStreamsAbortedByClient(1);
    await upstream.waitForAbortedByClient(1, { model: 'x' });
    expect(upstream.abortedByClient).toBe(1);
  });

  test.each<[string, Fault, object]>([
    ['an answered call', { kind: 'ok' }, {}],
    ['an error answer', { kind: 'error500' }, {}],
    ['a finished stream', { kind: 'ok' }, { stream: true }],
    ['an error event and [DONE] mid-stream', { kind: 'errorMidStream' }, { stream: true }],
    ['the fake resetting the connection', { kind: 'reset' }, {}],
    ['the fake cutting a body short', { kind: 'truncated' }, {}],
    ['the fake cutting a stream', { kind: 'cutMidStream' }, { stream: true }],
  ])('%s is no client abort', async (_case, fault, extra) => {
    upstream.setFault(fault);
    await postChat({ model: 'x', messages: MESSAGES, ...extra }).then(
      (response) => response.arrayBuffer().catch(() => undefined),
      () => undefined,
    );
    await upstream.waitForInFlight(0);
    expect(upstream.abortedByClient).toBe(0);
    expect(upstream.statsFor('x')).toMatchObject({ calls: 1, inFlight: 0, abortedByClient: 0 });
  });

  test('close() ending a hung call is no client abort', async () => {
    const own = await FakeHfUpstream.start();
    own.setFault({ kind: 'hang' });
    const call = rejectionOf(
      fetch(`${own.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'x', messages: MESSAGES }) }),
    );
    await own.waitForCallsFor('x', 1);
    await own.close();
    await call;
    expect(own.abortedByClient).toBe(0);
    expect(own.statsFor('x')).toMatchObject({ calls: 1, inFlight: 0, abortedByClient: 0 });
  });

  test('waitForCallsFor and waitForAbortedByClient reject naming the count when it is not reached', async () => {
    await expect(upstream.waitForCallsFor('org/a', 1, 50)).rejects.toThrow('still 0 calls for org/a (wanted >= 1) after 50 ms');
    await expect(upstream.waitForAbortedByClient(1, {}, 50)).rejects.toThrow(
      'still 0 requests aborted by their client (wanted >= 1) after 50 ms',
    );
    await expect(upstream.waitForAbortedByClient(2, { model: 'org/a' }, 50)).rejects.toThrow(
      'still 0 requests for org/a aborted by their client (wanted >= 2) after 50 ms',
    );
  });

  test('a reset forgets the aborts counted before it, and a call from before it aborted after it is not counted', async () => {
    upstream.setFault({ kind: 'hang' });
    const controllers = [new AbortController(), new AbortController()];
    const calls = controllers.map((controller) => rejectionOf(postChatWith({ model: 'x', messages: MESSAGES }, controller.signal)));
    await upstream.waitForCalls(2);
    controllers[0]?.abort();
    await upstream.waitForAbortedByClient(1);
    upstream.reset();
    expect([upstream.abortedByClient, upstream.stats.abortedByClient, upstream.callsFor('x')]).toEqual([0, 0, 0]);

    controllers[1]?.abort();
    await Promise.all(calls);
    await upstream.waitForInFlight(0);
    expect([upstream.abortedByClient, upstream.statsFor('x').abortedByClient]).toEqual([0, 0]);
  });
});

function postChatWith(body: unknown, signal: AbortSignal): Promise<Response> {
  return fetch(`${upstream.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  });
}
