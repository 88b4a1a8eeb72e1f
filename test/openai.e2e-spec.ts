// POST /v1/chat/completions and GET /v1/models over real HTTP, called the way users call them: with the official
// `openai` npm client, against the app as main.ts builds it and the fake HF upstream on loopback.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import OpenAI, { APIError, AuthenticationError, BadRequestError, RateLimitError } from 'openai';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import { type AnswerBody, ask, type Excerpt } from './support/http.js';
import { KNOWN_QUESTIONS as KNOWN, NONSENSE_QUESTIONS as NONSENSE, openCircuit, startTestApp, type TestApp } from './support/test-app.js';

/** The configured model (HF_MODEL): every response names it, whatever the request asked for. */
const MODEL = 'test-org/assistant-model';
const ANSWER = 'One trial call goes through while the circuit is half-open [1].';
/** Streamed by the fake word by word (each word with the space after it). */
const STREAMED_ANSWER = 'The cache keeps each answer for an hour [2].';
const STREAMED_TOKENS = STREAMED_ANSWER.match(/\S+\s*/g) ?? [];

/** What the assistant adds to a completion and to the last chunk of a stream. */
interface AssistantExtension {
  source: AnswerBody['source'];
  degraded: boolean;
  fallbackReason: string | null;
  excerpts: Excerpt[];
  circuit: AnswerBody['circuit'];
  cachedAt?: string;
  retryAfterSeconds?: number;
}

/** The `assistant` object the openai client's types do not know about. */
function assistantOf(completion: ChatCompletion | ChatCompletionChunk): AssistantExtension | undefined {
  return (completion as unknown as { assistant?: AssistantExtension }).assistant;
}

interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

interface Harness {
  readonly url: string;
  readonly upstream: FakeHfUpstream;
  client(options?: ConstructorParameters<typeof OpenAI>[0]): OpenAI;
}

/** A fake upstream and the app pointed at it, for one describe block; the upstream's fault and counters reset before each test. */
function useApp(env: Record<string, string> = {}): Harness {
  let upstream: FakeHfUpstream | undefined;
  let testApp: TestApp | undefined;
  beforeAll(async () => {
    upstream = await FakeHfUpstream.start();
    testApp = await startTestApp({ HF_ENDPOINT_URL: upstream.url, HF_MODEL: MODEL, ...env });
  });
  afterAll(async () => {
    await testApp?.close();
    await upstream?.close();
  });
  beforeEach(() => required(upstream).reset());
  return {
    get url() {
      return required(testApp).url;
    },
    get upstream() {
      return required(upstream);
    },
    client(options = {}) {
      // No retries unless a test asks for them: each test counts the requests it makes.
      return new OpenAI({ baseURL: `${required(testApp).url}/v1`, apiKey: 'no-key-needed', maxRetries: 0, ...options });
    },
  };
}

function required<T>(value: T | undefined): T {
  if (value === undefined) throw new Error('the app or upstream is not started');
  return value;
}

const user = (content: string): ChatCompletionMessageParam => ({ role: 'user', content });

/** The text of every chat message the upstream last received. */
function promptSentTo(upstream: FakeHfUpstream): string {
  const request = upstream.lastRequest?.body as { messages?: Array<{ content?: unknown }> } | undefined;
  return (request?.messages ?? []).map((message) => String(message.content)).join('\n');
}

/** Reads a client stream to its end. */
async function readAll(stream: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

const contentOf = (chunks: ChatCompletionChunk[]): string => chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('');

/** POST /v1/chat/completions with exactly these bytes, read to the end. */
async function postCompletion(url: string, body: string, headers: Record<string, string> = {}) {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, json: () => JSON.parse(text) as unknown };
}

/** The error the promise rejects with; fails the test when it resolves. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail, and it succeeded');
}

/** `assistant_answers_total` for one source and fallback reason, as GET /metrics says. */
/** Answers counted with this source and fallback reason, whichever model wrote them. */
async function answersCounted(url: string, source: string, fallbackReason: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(`assistant_answers_total{source="${source}",fallback_reason="${fallbackReason}",`))
    .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
}

const nowSeconds = () => Date.now() / 1000;

describe('POST /v1/chat/completions with the official openai client', () => {
  const h = useApp();

  it('answers the last user message as a chat.completion named for the configured model, with the assistant object and headers', async () => {
    h.upstream.setFault({ kind: 'ok', answer: ANSWER });
    const messages: ChatCompletionMessageParam[] = [
      { role: 'system', content: 'Answer briefly.' },
      user('What is a fuse?'),
      { role: 'assistant', content: 'A fuse breaks a circuit.' },
      user(KNOWN[0]),
    ];

    const { data, response } = await h.client().chat.completions.create({ model: 'gpt-4o', messages }).withResponse();

    expect(data).toMatchObject({
      object: 'chat.completion',
      model: MODEL,
      choices: [{ index: 0, message: { role: 'assistant', content: ANSWER }, finish_reason: 'stop' }],
    });
    expect(data.id).toMatch(/^chatcmpl-/);
    expect(Math.abs(data.created - nowSeconds())).toBeLessThan(60);
    const assistant = assistantOf(data);
    expect(assistant).toMatchObject({
      source: 'llm',
      degraded: false,
      fallbackReason: null,
      circuit: { name: 'huggingface', state: 'closed' },
    });
    expect(assistant?.excerpts.length).toBeGreaterThan(0);
    expect(assistant).not.toHaveProperty('retryAfterSeconds');
    expect(assistant).not.toHaveProperty('answer');
    expect(response.headers.get('x-assistant-source')).toBe('llm');
    expect(response.headers.get('x-assistant-degraded')).toBe('false');
    // The model was asked the last user message, as the configured model; the request's `model` changes nothing.
    expect(h.upstream.calls).toBe(1);
    expect(promptSentTo(h.upstream)).toContain(`Question: ${KNOWN[0]}`);
    expect(promptSentTo(h.upstream)).not.toContain('What is a fuse?');
    expect(h.upstream.lastRequest?.body).toMatchObject({ model: MODEL });
    // One answer chain: /assistant/query now finds the same answer in the cache.
    const same = await ask(h.url, { query: KNOWN[0] });
    expect(same.body).toMatchObject({ answer: ANSWER, source: 'cache' });
  });

  it('streams the answer as chat.completion.chunk events the client reads: the role first, the tokens, the assistant object last', async () => {
    h.upstream.setFault({ kind: 'ok', answer: STREAMED_ANSWER });

    const stream = await h.client().chat.completions.create({ model: 'gpt-4o', messages: [user(KNOWN[1])], stream: true });
    const chunks = await readAll(stream);

    expect(h.upstream.streams).toBe(1);
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    expect(contentOf(chunks)).toBe(STREAMED_ANSWER);
    // A content delta per token as the model sent it, not the whole answer at the end.
    expect(chunks.filter((chunk) => chunk.choices[0]?.delta.content).map((chunk) => chunk.choices[0]?.delta.content)).toEqual(
      STREAMED_TOKENS,
    );
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    for (const chunk of chunks) expect(chunk).toMatchObject({ object: 'chat.completion.chunk', model: MODEL });
    const last = chunks.at(-1);
    expect(last?.choices[0]?.finish_reason).toBe('stop');
    expect(assistantOf(last!)).toMatchObject({ source: 'llm', degraded: false, fallbackReason: null, circuit: { state: 'closed' } });
    expect(assistantOf(last!)?.excerpts.length).toBeGreaterThan(0);
    for (const chunk of chunks.slice(0, -1)) {
      expect(chunk.choices[0]?.finish_reason).toBeNull();
      expect(assistantOf(chunk)).toBeUndefined();
    }
    // The whole answer was cached: asked again without streaming, the same text.
    const again = await h.client().chat.completions.create({ model: 'gpt-4o', messages: [user(KNOWN[1])] });
    expect(again.choices[0]?.message.content).toBe(STREAMED_ANSWER);
    expect(assistantOf(again)?.source).toBe('cache');
  });

  it('sends a stream as text/event-stream data events that end with data: [DONE]', async () => {
    h.upstream.setFault({ kind: 'ok', answer: STREAMED_ANSWER });

    const response = await postCompletion(h.url, JSON.stringify({ messages: [user(KNOWN[2])], stream: true }));

    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(response.headers.get('cache-control')).toMatch(/no-cache/);
    expect(response.headers.get('x-accel-buffering')).toBe('no');
    expect(response.text.endsWith('data: [DONE]\n\n')).toBe(true);
    const events = response.text.split('\n\n').filter((event) => event !== '');
    for (const event of events) expect(event).toMatch(/^data: /);
    const chunks = events.slice(0, -1).map((event) => JSON.parse(event.slice('data: '.length)) as ChatCompletionChunk);
    expect(contentOf(chunks)).toBe(STREAMED_ANSWER);
  });

  it('ends a stream the model broke off with its last chunk and [DONE]: the partial answer, degraded, interrupted', async () => {
    h.upstream.setFault({ kind: 'cutMidStream', answer: STREAMED_ANSWER, afterTokens: 2 });

    const chunks = await readAll(await h.client().chat.completions.create({ model: 'gpt-4o', messages: [user(KNOWN[3])], stream: true }));
    const raw = await postCompletion(h.url, JSON.stringify({ messages: [user(KNOWN[3])], stream: true }));

    const partial = STREAMED_TOKENS.slice(0, 2).join('');
    expect(contentOf(chunks)).toBe(partial);
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop');
    expect(assistantOf(chunks.at(-1)!)).toMatchObject({ source: 'llm', degraded: true, fallbackReason: 'interrupted' });
    expect(raw.status).toBe(200);
    expect(raw.text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(raw.text).toContain('"fallbackReason":"interrupted"');
  });

  it("stops the model's stream when the client stops reading (breaks out of the stream)", async () => {
    const longAnswer = Array.from({ length: 30 }, (_, i) => `word${i}`).join(' ');
    h.upstream.setFault({ kind: 'slowTokens', answer: longAnswer, tokenIntervalMs: 200 });

    const stream = await h.client().chat.completions.create({ model: 'gpt-4o', messages: [user(KNOWN[6])], stream: true });
    let received = '';
    for await (const chunk of stream) {
      received += chunk.choices[0]?.delta.content ?? '';
      if (received !== '') break;
    }

    await h.upstream.waitForStreamsAbortedByClient(1, 5000);
    expect(received).toBe('word0 ');
    expect(h.upstream.stats.lastStream).toMatchObject({ outcome: 'abortedByClient' });
    expect(h.upstream.stats.lastStream?.tokens).toBeLessThan(30);
  });

  it('takes the text parts of a content array as the question, and ignores the other parts', async () => {
    const [first, ...rest] = KNOWN[4].split(' ');
    const completion = await h.client().chat.completions.create({
      model: 'gpt-4o',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: first ?? '' },
            { type: 'image_url', image_url: { url: 'https://example.com/probe.png' } },
            { type: 'text', text: rest.join(' ') },
          ],
        },
      ],
    });

    expect(completion.choices[0]?.message.content).toMatch(/^Answer: /);
    expect(promptSentTo(h.upstream)).toContain(`Question: ${first}\n${rest.join(' ')}`);
    expect(promptSentTo(h.upstream)).not.toContain('example.com');
  });

  it("ignores the fields it does not use, OpenAI's (user, n, presence_penalty, …) and others; the configured generation parameters apply", async () => {
    h.upstream.setFault({ kind: 'ok', answer: ANSWER });
    const completion = await h.client().chat.completions.create({
      model: 'gpt-4o',
      messages: [user(KNOWN[5])],
      user: 'user-42',
      n: 1,
      presence_penalty: 0.5,
      frequency_penalty: 0.1,
      seed: 7,
      stop: ['\n\n'],
      logit_bias: {},
      max_tokens: 16,
      temperature: 1.5,
    });
    const raw = await postCompletion(h.url, JSON.stringify({ messages: [user(KNOWN[6])], topK: 50, foo: { bar: true }, stream: null }));

    expect(completion.choices[0]?.message.content).toBe(ANSWER);
    expect(h.upstream.calls).toBe(2);
    expect(h.upstream.lastRequest?.body).toMatchObject({ max_tokens: 512, temperature: 0.2 });
    expect(raw.status).toBe(200);
    expect(raw.json()).toMatchObject({ object: 'chat.completion', choices: [{ message: { content: ANSWER } }] });
  });

  it.each([
    ['no user message', { messages: [{ role: 'system', content: 'Answer briefly.' }] }, 'messages', 'invalid_value'],
    ['an over-long question', { messages: [user('x'.repeat(2001))] }, 'messages[0].content', 'string_above_max_length'],
    ['an empty question', { messages: [user('   ')] }, 'messages[0].content', 'invalid_value'],
    ['a temperature out of range', { messages: [user(KNOWN[0])], temperature: 3 }, 'temperature', 'value_above_maximum'],
  ])('refuses %s with 400 in OpenAI shape: the client raises BadRequestError naming the field', async (_case, body, param, code) => {
    const error = await rejection(
      h.client().chat.completions.create({ model: 'gpt-4o', ...body } as OpenAI.ChatCompletionCreateParamsNonStreaming),
    );

    expect(error).toBeInstanceOf(BadRequestError);
    expect(error).toMatchObject({ status: 400, type: 'invalid_request_error', param, code });
    expect(h.upstream.calls).toBe(0);
  });

  it.each([
    ['no messages', JSON.stringify({ model: 'gpt-4o' }), 'messages', 'missing_required_parameter'],
    ['messages that are not an array', JSON.stringify({ messages: 'hello' }), 'messages', 'invalid_type'],
    ['no messages at all', JSON.stringify({ messages: [] }), 'messages', 'empty_array'],
    ['a message without a role', JSON.stringify({ messages: [{ content: 'hello' }] }), 'messages[0].role', 'missing_required_parameter'],
    ['an unknown role', JSON.stringify({ messages: [{ role: 'robot', content: 'hello' }] }), 'messages[0].role', 'invalid_value'],
    [
      'a user message without content',
      JSON.stringify({ messages: [{ role: 'user' }] }),
      'messages[0].content',
      'missing_required_parameter',
    ],
    [
      'a content part without text',
      JSON.stringify({ messages: [user('a'), { role: 'user', content: [{ type: 'text' }] }] }),
      'messages[1].content[0].text',
      'invalid_type',
    ],
    ['a stream flag that is a string', JSON.stringify({ messages: [user('hello')], stream: 'yes' }), 'stream', 'invalid_type'],
    ['max_tokens that is not an integer', JSON.stringify({ messages: [user('hello')], max_tokens: 1.5 }), 'max_tokens', 'invalid_type'],
    ['a body that is not an object', JSON.stringify(['hello']), null, 'invalid_type'],
    ['malformed JSON', '{"messages": [', null, null],
  ])('refuses %s with 400 and a body of exactly error {message, type, param, code}', async (_case, body, param, code) => {
    const response = await postCompletion(h.url, body);

    expect(response.status).toBe(400);
    const json = response.json() as OpenAiErrorBody;
    expect(Object.keys(json)).toEqual(['error']);
    expect(Object.keys(json.error).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect(json.error).toMatchObject({ type: 'invalid_request_error', param, code });
    expect(json.error.message.length).toBeGreaterThan(0);
    expect(h.upstream.calls).toBe(0);
  });

  it('refuses a body over 64 KiB (413) and one that is not JSON (415) in OpenAI shape too', async () => {
    const tooLarge = await postCompletion(h.url, JSON.stringify({ messages: [user('x'.repeat(70 * 1024))] }));
    const notJson = await postCompletion(h.url, 'What does half-open mean?', { 'content-type': 'text/plain' });

    expect([tooLarge.status, notJson.status]).toEqual([413, 415]);
    for (const response of [tooLarge, notJson]) {
      expect(response.json()).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: null } });
    }
    expect(h.upstream.calls).toBe(0);
  });

  it('answers an unknown /v1 path with 404 in OpenAI shape', async () => {
    const response = await fetch(`${h.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    const body = (await response.json()) as OpenAiErrorBody;

    expect(response.status).toBe(404);
    expect(body.error).toMatchObject({ type: 'invalid_request_error', param: null, code: null });
  });

  it('lists the configured model: client.models.list()', async () => {
    const page = await h.client().models.list();

    expect(page.data).toEqual([{ id: MODEL, object: 'model', created: expect.any(Number), owned_by: 'test-org' }]);
    expect(Math.abs((page.data[0]?.created ?? 0) - nowSeconds())).toBeLessThan(600);
  });

  it('counts each answer once in assistant_answers_total, streamed or not', async () => {
    h.upstream.setFault({ kind: 'ok', answer: STREAMED_ANSWER });
    const before = await answersCounted(h.url, 'llm', 'none');

    await h.client().chat.completions.create({ model: 'gpt-4o', messages: [user(KNOWN[7])] });
    await readAll(
      await h.client().chat.completions.create({ model: 'gpt-4o', messages: [user('How is the answer cache keyed?')], stream: true }),
    );

    expect(await answersCounted(h.url, 'llm', 'none')).toBe(before + 2);
  });
});

describe('POST /v1/chat/completions while the model is out', () => {
  const h = useApp({ CIRCUIT_BREAKER_RESET_TIMEOUT: '30' });

  it('answers from the fallbacks with the circuit open: a degraded completion, with why in the assistant object and the headers', async () => {
    await openCircuit(h.url, h.upstream);
    const calls = h.upstream.calls;

    const { data, response } = await h
      .client()
      .chat.completions.create({ model: 'gpt-4o', messages: [user(KNOWN[3])] })
      .withResponse();

    expect(data.choices[0]?.message.content).toMatch(/^The assistant's model is unavailable right now/);
    const assistant = assistantOf(data);
    expect(assistant).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'circuit_open', circuit: { state: 'open' } });
    expect(assistant?.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(assistant?.retryAfterSeconds).toBeLessThanOrEqual(30);
    expect(assistant?.excerpts.length).toBeGreaterThan(0);
    expect(response.headers.get('x-assistant-source')).toBe('excerpts');
    expect(response.headers.get('x-assistant-degraded')).toBe('true');
    expect(h.upstream.calls).toBe(calls);
  });

  it('streams a fallback answer, which has no tokens, as one content delta before the last chunk', async () => {
    const chunks = await readAll(await h.client().chat.completions.create({ model: 'gpt-4o', messages: [user(KNOWN[4])], stream: true }));

    const contents = chunks.map((chunk) => chunk.choices[0]?.delta.content).filter((content) => content);
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    expect(contents).toHaveLength(1);
    expect(contents[0]).toMatch(/^The assistant's model is unavailable right now/);
    expect(assistantOf(chunks.at(-1)!)).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'circuit_open' });
  });

  it.each([false, true])(
    'answers 503 service_unavailable with Retry-After when nothing is left to answer from (stream: %s)',
    async (stream) => {
      const error = await rejection(h.client().chat.completions.create({ model: 'gpt-4o', messages: [user(NONSENSE[0])], stream }));

      expect(error).toBeInstanceOf(APIError);
      expect(error).toMatchObject({ status: 503, type: 'server_error', code: 'service_unavailable', param: null });
      const retryAfter = Number((error as APIError).headers?.get('retry-after'));
      expect(Number.isInteger(retryAfter)).toBe(true);
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(30);
    },
  );
});

describe("POST /v1/chat/completions: the client's own retries of a 503", () => {
  // A short open period: Retry-After is 1 s, so the client's retries (honouring it) fit in the test.
  const h = useApp({ CIRCUIT_BREAKER_RESET_TIMEOUT: '1' });

  it('waits the Retry-After the service sends before each retry, then raises APIError 503', async () => {
    h.upstream.setFault({ kind: 'error500' });
    const attempts: Array<{ atSeconds: number; status: number; retryAfter: string | null }> = [];
    const countingFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
      const atSeconds = performance.now() / 1000;
      const response = await fetch(input, init);
      attempts.push({ atSeconds, status: response.status, retryAfter: response.headers.get('retry-after') });
      return response;
    };
    const client = h.client({ maxRetries: 2, fetch: countingFetch });

    const error = await rejection(client.chat.completions.create({ model: 'gpt-4o', messages: [user(NONSENSE[1])] }));

    expect(error).toBeInstanceOf(APIError);
    expect(error).toMatchObject({ status: 503, code: 'service_unavailable' });
    expect(attempts.map(({ status, retryAfter }) => ({ status, retryAfter }))).toEqual([
      { status: 503, retryAfter: '1' },
      { status: 503, retryAfter: '1' },
      { status: 503, retryAfter: '1' },
    ]);
    // Each attempt reached the app, and the app asked the model each time.
    expect(h.upstream.calls).toBe(3);
    // Without Retry-After the client would wait 0.375..0.5 s before its first retry; it waited the 1 s it was told.
    for (let i = 1; i < attempts.length; i++) {
      const gapSeconds = (attempts[i]?.atSeconds ?? 0) - (attempts[i - 1]?.atSeconds ?? 0);
      expect(gapSeconds).toBeGreaterThanOrEqual(0.95);
      expect(gapSeconds).toBeLessThan(10);
    }
  });
});

describe('/v1 with ASSISTANT_API_KEYS and RATE_LIMIT_PER_MINUTE=1', () => {
  const KEYS = ['key-one-0123456789', 'key-two-0123456789', 'key-three-012345678'] as const;
  const h = useApp({ ASSISTANT_API_KEYS: KEYS.join(','), RATE_LIMIT_PER_MINUTE: '1' });

  it('refuses a wrong key with 401 invalid_api_key and WWW-Authenticate: the client raises AuthenticationError', async () => {
    const client = h.client({ apiKey: 'not-a-key' });

    const completion = await rejection(client.chat.completions.create({ model: 'gpt-4o', messages: [user(KNOWN[0])] }));
    const models = await rejection(client.models.list());
    const withoutKey = await postCompletion(h.url, JSON.stringify({ messages: [user(KNOWN[0])] }));

    for (const error of [completion, models]) {
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error).toMatchObject({ status: 401, type: 'invalid_request_error', code: 'invalid_api_key' });
      expect((error as APIError).headers?.get('www-authenticate')).toMatch(/^Bearer/);
    }
    expect(withoutKey.status).toBe(401);
    expect(withoutKey.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(withoutKey.json()).toMatchObject({ error: { type: 'invalid_request_error', param: null, code: 'invalid_api_key' } });
    expect(h.upstream.calls).toBe(0);
  });

  it("answers with a right key, and refuses the key's second request within the minute: 429 rate_limit_exceeded with Retry-After", async () => {
    h.upstream.setFault({ kind: 'ok', answer: ANSWER });
    const client = h.client({ apiKey: KEYS[0] });

    const answered = await client.chat.completions.create({ model: 'gpt-4o', messages: [user(KNOWN[1])] });
    const refused = await rejection(client.chat.completions.create({ model: 'gpt-4o', messages: [user(KNOWN[2])], stream: true }));

    expect(answered.choices[0]?.message.content).toBe(ANSWER);
    expect(refused).toBeInstanceOf(RateLimitError);
    expect(refused).toMatchObject({ status: 429, type: 'requests', code: 'rate_limit_exceeded' });
    const retryAfter = Number((refused as APIError).headers?.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(h.upstream.calls).toBe(1);
  });

  it("lists the models for a key without spending the key's answers", async () => {
    const client = h.client({ apiKey: KEYS[1] });

    const lists = [await client.models.list(), await client.models.list()];
    const answered = await client.chat.completions.create({ model: 'gpt-4o', messages: [user(KNOWN[3])] });

    for (const list of lists) expect(list.data.map((model) => model.id)).toEqual([MODEL]);
    expect(answered.choices[0]?.message.content).toMatch(/^Answer: /);
  });
});
