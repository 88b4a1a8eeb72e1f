import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { FakeHfUpstream, type Fault } from '../../test/support/fake-hf-upstream.js';
import { modelFailureVerdict, ModelCallFailedError, ModelRequestRejectedError, ModelUnconfiguredError } from './hf-textgen.errors.js';
import { HfTextGenClient } from './hf-textgen.client.js';

// The plain service (no Nest, so no breaker): what the client sends and how each upstream answer is classified.
const TOKEN = 'hf_unit_test_secret_token';
const PROMPT = { system: 'Answer from the excerpts.', user: 'Excerpts:\n[1] Guide\nText\n\nQuestion: what is half-open?' };

describe('HfTextGenClient against a real HTTP upstream', () => {
  let upstream: FakeHfUpstream;
  let service: HfTextGenClient;

  beforeAll(async () => {
    upstream = await FakeHfUpstream.start();
    service = new HfTextGenClient({
      token: TOKEN,
      model: 'org/instruct-model',
      endpointUrl: upstream.url,
      maxNewTokens: 64,
      temperature: 0.2,
    });
  });
  beforeEach(() => upstream.reset());
  afterAll(() => upstream.close());

  async function failureFor(fault: Fault): Promise<unknown> {
    upstream.setFault(fault);
    return service.generate(PROMPT).then(
      () => {
        throw new Error(`expected ${fault.kind} to fail`);
      },
      (error: unknown) => error,
    );
  }

  it('sends the prompt, model, generation parameters and token, and returns the answer text', async () => {
    upstream.setFault({ kind: 'ok', answer: '  Half-open lets one trial call through. ' });
    const generation = await service.generate(PROMPT);
    expect(generation.text).toBe('Half-open lets one trial call through.');
    const request = upstream.lastRequest;
    expect(request?.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(request?.body).toMatchObject({
      model: 'org/instruct-model',
      max_tokens: 64,
      temperature: 0.2,
      messages: [
        { role: 'system', content: PROMPT.system },
        { role: 'user', content: PROMPT.user },
      ],
    });
  });

  it.each<[string, Fault, number]>([
    ['a 500', { kind: 'error500' }, 500],
    ['a 408', { kind: 'requestTimeout' }, 408],
    ['a 401 (bad token)', { kind: 'unauthorized' }, 401],
    ['a 402 (credits spent)', { kind: 'paymentRequired' }, 402],
    ['a 403 (token lacks permission)', { kind: 'forbidden' }, 403],
    ['the router’s 400 model_not_supported', { kind: 'unknownModel' }, 400],
  ])('counts %s as an outage of the model', async (_name, fault, status) => {
    const error = await failureFor(fault);
    expect(error).toBeInstanceOf(ModelCallFailedError);
    expect((error as ModelCallFailedError).status).toBe(status);
    expect(modelFailureVerdict(error).counts).toBe(true);
  });

  it.each<[string, Fault, number]>([
    ['a 400 validation error', { kind: 'badRequest' }, 400],
    ['a 413', { kind: 'payloadTooLarge' }, 413],
    ['a 422', { kind: 'unprocessable' }, 422],
  ])('does not count %s against the model: the request is at fault', async (_name, fault, status) => {
    const error = await failureFor(fault);
    expect(error).toBeInstanceOf(ModelRequestRejectedError);
    expect((error as ModelRequestRejectedError).status).toBe(status);
    expect(modelFailureVerdict(error).counts).toBe(false);
  });

  it('keeps the wait a 429 asks for in Retry-After', async () => {
    const error = await failureFor({ kind: 'rateLimited429', retryAfterSeconds: 7 });
    expect(error).toMatchObject({ status: 429, retryAfterSeconds: 7 });
  });

  it("keeps the wait a 429 gives only in the Hub's ratelimit header", async () => {
    const error = await failureFor({ kind: 'rateLimited429', ratelimitSeconds: 55 });
    expect(error).toMatchObject({ status: 429, retryAfterSeconds: 55 });
  });

  it('asks a loading model once (no hidden retries) and keeps its estimated_time', async () => {
    const error = await failureFor({ kind: 'loading503', estimatedTimeSeconds: 20 });
    expect(error).toMatchObject({ status: 503, retryAfterSeconds: 20 });
    expect(upstream.calls).toBe(1);
  });

  it.each<[string, Fault, string]>([
    ['a connection reset', { kind: 'reset' }, 'network'],
    ['a body that is not JSON', { kind: 'malformed' }, 'protocol'],
    ['a completion without choices', { kind: 'missingFields' }, 'protocol'],
  ])('counts %s as an outage of the model', async (_name, fault, kind) => {
    const error = await failureFor(fault);
    expect(error).toBeInstanceOf(ModelCallFailedError);
    expect((error as ModelCallFailedError).kind).toBe(kind);
  });

  it('counts a body cut short as an outage of the model', async () => {
    const error = await failureFor({ kind: 'truncated' });
    expect(error).toBeInstanceOf(ModelCallFailedError);
    expect(modelFailureVerdict(error).counts).toBe(true);
  });

  it('closes the socket when its signal is aborted, and reports a time-out', async () => {
    upstream.setFault({ kind: 'hang' });
    const controller = new AbortController();
    const call = service.generate(PROMPT, controller.signal);
    await upstream.waitForCalls(1);
    expect(upstream.inFlight).toBe(1);
    controller.abort();
    await expect(call).rejects.toMatchObject({ name: 'ModelCallFailedError', kind: 'timeout' });
    // A hung request leaves the upstream's books only when its connection closes.
    await upstream.waitForInFlight(0);
  });

  it('never puts the token in an error message', async () => {
    for (const fault of [{ kind: 'unauthorized' }, { kind: 'error500' }, { kind: 'reset' }] as Fault[]) {
      const error = (await failureFor(fault)) as Error;
      expect(`${error.message} ${error.stack ?? ''}`).not.toContain(TOKEN);
    }
  });

  it('makes no call at all without a token or an endpoint', async () => {
    const unconfigured = new HfTextGenClient({ token: undefined, model: 'm', endpointUrl: undefined, maxNewTokens: 8, temperature: 0 });
    expect(unconfigured.configured).toBe(false);
    await expect(unconfigured.generate(PROMPT)).rejects.toBeInstanceOf(ModelUnconfiguredError);
    expect(upstream.calls).toBe(0);
    expect(modelFailureVerdict(new ModelUnconfiguredError()).counts).toBe(false);
  });
});

describe('HfTextGenClient against an endpoint whose completions name no model', () => {
  let server: Server;
  let endpointUrl: string;
  let servedModel: string | undefined;

  beforeAll(async () => {
    // Some OpenAI-compatible servers leave `model` out of a completion; the client accepts it without one.
    server = createServer((_req, res) => {
      const completion = {
        id: 'cmpl-1',
        object: 'chat.completion',
        created: 1_700_000_000,
        ...(servedModel === undefined ? {} : { model: servedModel }),
        choices: [{ index: 0, message: { role: 'assistant', content: 'One trial call goes through.' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 12, completion_tokens: 6, total_tokens: 18 },
      };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(completion));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpointUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const serviceFor = (url: string) =>
    new HfTextGenClient({ token: undefined, model: 'org/configured', endpointUrl: url, maxNewTokens: 8, temperature: 0 });

  it('reports the configured model when the completion names none', async () => {
    servedModel = undefined;
    await expect(serviceFor(endpointUrl).generate(PROMPT)).resolves.toEqual({
      text: 'One trial call goes through.',
      model: 'org/configured',
    });
  });

  it('reports the model the endpoint says it served when it names one', async () => {
    servedModel = 'org/served-instead';
    await expect(serviceFor(endpointUrl).generate(PROMPT)).resolves.toMatchObject({ model: 'org/served-instead' });
  });
});

describe('HfTextGenClient at start-up', () => {
  let log: jest.Spied<Logger['log']>;
  let warn: jest.Spied<Logger['warn']>;

  beforeEach(() => {
    log = jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });
  afterEach(() => {
    jest.restoreAllMocks();
  });

  const config = { model: 'org/instruct-model', maxNewTokens: 8, temperature: 0 };

  it('says it generates through the HF Inference Providers router when only a token is set, never logging the token', () => {
    new HfTextGenClient({ ...config, token: TOKEN, endpointUrl: undefined }).announce();
    expect(log.mock.calls).toEqual([['Generating with org/instruct-model through the HF Inference Providers router']]);
    expect(warn).not.toHaveBeenCalled();
  });

  it('names only the origin of a configured endpoint, not its path or query', () => {
    new HfTextGenClient({ ...config, token: TOKEN, endpointUrl: 'http://127.0.0.1:8080/v1/private?key=abc' }).announce();
    expect(log.mock.calls).toEqual([['Generating with org/instruct-model through endpoint http://127.0.0.1:8080']]);
  });

  it('warns, without the token, when the token would go over plain http to a host that is not this machine', () => {
    new HfTextGenClient({ ...config, token: TOKEN, endpointUrl: 'http://tgi.internal:8080/' }).announce();
    expect(warn.mock.calls).toEqual([
      ['HF_TOKEN is sent to http://tgi.internal:8080 over plain http: anyone on the path can read it; use https'],
    ]);
    expect(JSON.stringify(warn.mock.calls)).not.toContain(TOKEN);
  });

  it.each(['http://127.0.0.1:8080/', 'http://localhost:8080/', 'https://tgi.internal/'])(
    'does not warn about the token for %s (loopback, or https)',
    (endpointUrl) => {
      new HfTextGenClient({ ...config, token: TOKEN, endpointUrl }).announce();
      expect(warn).not.toHaveBeenCalled();
    },
  );

  it('warns that the target will not be called when neither a token nor an endpoint is set', () => {
    new HfTextGenClient({ ...config, token: undefined, endpointUrl: undefined }).announce();
    expect(warn.mock.calls).toEqual([['Neither HF_TOKEN nor an endpoint is set for org/instruct-model: it will not be called']]);
    expect(log).not.toHaveBeenCalled();
  });
});

describe('HfTextGenClient.generateStream (the plain method, no breaker)', () => {
  let upstream: FakeHfUpstream;
  let service: HfTextGenClient;
  /** A raw endpoint streaming exactly these SSE data payloads, then ending the response cleanly. */
  let scripted: Server;
  let scriptedUrl: string;
  let payloads: string[] = [];

  beforeAll(async () => {
    upstream = await FakeHfUpstream.start();
    service = new HfTextGenClient({
      token: TOKEN,
      model: 'org/instruct-model',
      endpointUrl: upstream.url,
      maxNewTokens: 64,
      temperature: 0.2,
    });
    scripted = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(payloads.map((data) => `data: ${data}\n\n`).join(''));
    });
    await new Promise<void>((resolve) => scripted.listen(0, '127.0.0.1', resolve));
    scriptedUrl = `http://127.0.0.1:${(scripted.address() as AddressInfo).port}`;
  });
  beforeEach(() => upstream.reset());
  afterAll(async () => {
    scripted.closeAllConnections();
    await new Promise((resolve) => scripted.close(resolve));
    await upstream.close();
  });

  async function read(stream: Promise<AsyncIterable<string>>): Promise<string[]> {
    const pieces: string[] = [];
    for await (const piece of await stream) pieces.push(piece);
    return pieces;
  }

  const chunk = (content: string, finish: string | null = null) =>
    JSON.stringify({
      id: 'c',
      object: 'chat.completion.chunk',
      created: 1,
      model: 'm',
      choices: [{ index: 0, delta: { role: 'assistant', content }, finish_reason: finish }],
    });

  it('asks for a stream with the same prompt and parameters, and yields the text pieces in order', async () => {
    upstream.setFault({ kind: 'ok', answer: 'One trial call goes through.' });
    const pieces = await read(service.generateStream(PROMPT));
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.join('')).toBe('One trial call goes through.');
    expect(upstream.lastRequest?.body).toMatchObject({ stream: true, model: 'org/instruct-model', max_tokens: 64 });
  });

  it.each<[string, Fault]>([
    ['an error event inside the 200 stream', { kind: 'errorMidStream', afterTokens: 1 }],
    ['a malformed chunk', { kind: 'malformedChunk', afterTokens: 1 }],
    ['a connection cut mid-stream', { kind: 'cutMidStream', afterTokens: 1 }],
  ])('turns %s into a ModelCallFailedError, a failure for the breaker', async (_case, fault) => {
    upstream.setFault(fault);
    const error = await read(service.generateStream(PROMPT)).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(ModelCallFailedError);
    expect(modelFailureVerdict(error)).toMatchObject({ counts: true });
    expect(String((error as Error).message)).not.toContain(TOKEN);
  });

  it('a stream that ends without a finish reason is a failure, not a short answer', async () => {
    payloads = [chunk('Half'), chunk('-open')];
    const cut = new HfTextGenClient({ token: undefined, model: 'm', endpointUrl: scriptedUrl, maxNewTokens: 8, temperature: 0 });
    await expect(read(cut.generateStream(PROMPT))).rejects.toMatchObject({
      kind: 'protocol',
      message: expect.stringContaining('finish reason'),
    });

    payloads = [chunk('Half'), chunk('-open', 'stop'), '[DONE]'];
    await expect(read(cut.generateStream(PROMPT))).resolves.toEqual(['Half', '-open']);
  });

  it('a stream with no content at all is a failure', async () => {
    payloads = [chunk('', 'stop'), '[DONE]'];
    const empty = new HfTextGenClient({ token: undefined, model: 'm', endpointUrl: scriptedUrl, maxNewTokens: 8, temperature: 0 });
    await expect(read(empty.generateStream(PROMPT))).rejects.toMatchObject({
      kind: 'protocol',
      message: expect.stringContaining('no message content'),
    });
  });

  it('without a token or an endpoint it calls nothing', async () => {
    const unconfigured = new HfTextGenClient({ token: undefined, model: 'm', endpointUrl: undefined, maxNewTokens: 8, temperature: 0 });
    await expect(unconfigured.generateStream(PROMPT)).rejects.toBeInstanceOf(ModelUnconfiguredError);
  });
});
