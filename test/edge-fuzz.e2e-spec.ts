// Fuzzing the edge: fast-check properties over the real HTTP app. Thousands of random requests (methods, paths,
// content types, bodies, header sets with Authorization and x-api-key variants, and raw malformed bytes): never a 5xx
// but the contract's 503, never a crash, never a stack trace or a secret in a response.
//
// A failure prints fast-check's seed and path; replay it with
//   FC_SEED=<seed> FC_PATH=<path> npx jest -c test/jest-e2e.config.js test/edge-fuzz.e2e-spec.ts -t '<the test's name>'
// (with NODE_OPTIONS as in `npm run test:e2e`), and search longer with FC_RUNS=<runs>.
import { createHash } from 'node:crypto';
import { type IncomingHttpHeaders, type OutgoingHttpHeaders, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { BODY_LIMIT_BYTES, jsonNestingExceeds, MAX_JSON_NESTING } from '../src/app.setup.js';
import { propertyRunParameters } from './support/fast-check-replay.js';
import { type Fault, FakeHfUpstream } from './support/fake-hf-upstream.js';
import { KNOWN_QUESTIONS, NONSENSE_QUESTIONS, startTestApp, type TestApp } from './support/test-app.js';

const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex');

/** Recognisable, so a leak is found wherever it appears. */
const HF_TOKEN = 'hf_FUZZSECRETdoNotLeakMe0123456789';
const PLAIN_KEY = 'fuzz-plain-key-5f1e0c2a9b';
/** Configured by its sha256 only. */
const HASHED_KEY = 'fuzz-hashed-key-77d3a1c4e8';
const HASHED_KEY_SHA = sha256Hex(HASHED_KEY);
const KEYS = [PLAIN_KEY, HASHED_KEY] as const;
/** None of these may appear in any response, headers or body. */
const SECRETS = [HF_TOKEN, PLAIN_KEY, HASHED_KEY, HASHED_KEY_SHA];
const MAX_QUERY_LENGTH = 2000;

/** Requests per property; "thousands" in all. FC_RUNS overrides each. */
const HEALTHY_RUNS = 1500;
const RAW_RUNS = 250;
const FAILING_RUNS = 400;

let upstream: FakeHfUpstream;
let testApp: TestApp;
let port: number;
/** What reached the real process' `unhandledRejection` / `uncaughtException` while the app ran. */
const processErrors: string[] = [];
// Jest gives each test file a copy of `process` that the real one's events never reach (and hands out that copy for
// `node:process` too): a function made by the host realm's Function constructor sees the host's global `process`.
const realProcess = ((setTimeout.constructor as FunctionConstructor)('return process') as () => NodeJS.Process)();
const onUnhandled = (reason: unknown) => void processErrors.push(`unhandledRejection: ${describeError(reason)}`);
const onUncaught = (error: unknown) => void processErrors.push(`uncaughtException: ${describeError(error)}`);

function describeError(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}

beforeAll(async () => {
  realProcess.on('unhandledRejection', onUnhandled);
  realProcess.on('uncaughtException', onUncaught);
  upstream = await FakeHfUpstream.start();
  testApp = await startTestApp({
    HF_ENDPOINT_URL: upstream.url,
    HF_TOKEN,
    ASSISTANT_API_KEYS: `${PLAIN_KEY},sha256:${HASHED_KEY_SHA}`,
    // A healthy upstream answers in milliseconds; a loaded machine must not turn that into a time-out and a 503.
    CIRCUIT_BREAKER_TIMEOUT_SECONDS: '5',
    // a stream stalled mid-way is cut after this
    HF_STREAM_IDLE_TIMEOUT_SECONDS: '0.5',
  });
  port = Number(new URL(testApp.url).port);
}, 60_000);

afterAll(async () => {
  await testApp?.close();
  await upstream?.close();
  realProcess.off('unhandledRejection', onUnhandled);
  realProcess.off('uncaughtException', onUncaught);
});

// ---------------------------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------------------------

const charFrom = (chars: string) => fc.constantFrom(...chars.split(''));
const charCode = (min: number, max: number) => fc.integer({ min, max }).map((code) => String.fromCharCode(code));
/** Printable ASCII: what Node's client accepts in a header value. */
const printable = (maxLength: number) => fc.string({ unit: charCode(0x20, 0x7e), maxLength });
/** Printable ASCII and Latin-1 (obs-text): bytes a header value may carry on the wire. */
const headerValue = (maxLength: number) =>
  fc.string({ unit: fc.oneof({ weight: 9, arbitrary: charCode(0x20, 0x7e) }, { weight: 1, arbitrary: charCode(0x80, 0xff) }), maxLength });
const TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const token = (minLength: number, maxLength: number) => fc.string({ unit: charFrom(TOKEN_CHARS), minLength, maxLength });
/** A key that is none of the configured ones (nor one of them with a character more or less). */
const wrongKey = fc.oneof(token(1, 40), fc.constantFrom('not-a-key', 'fuzz-plain-key', 'null', 'undefined', '0'));

/** Which credential a header presents, as the contract reads it: `unclear` where it does not say. */
type Presents = 'none' | 'valid' | 'invalid' | 'unclear';

interface Credential {
  value?: string | string[];
  presents: Presents;
}

const key = fc.constantFrom(...KEYS);
const present =
  (presents: Presents) =>
  (value: string | string[]): Credential => ({ value, presents });

/** Authorization values that present a configured key: the scheme is case-insensitive, 1*SP before the token. */
const validBearer = fc
  .tuple(fc.constantFrom('Bearer', 'bearer', 'BEARER', 'bEaReR'), fc.constantFrom(' ', '  '), key, fc.constantFrom('', ' ', '  '))
  .map(([scheme, gap, k, tail]) => `${scheme}${gap}${k}${tail}`);
const b64 = (text: string) => Buffer.from(text).toString('base64');
const invalidAuthorization: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('', 'Bearer', 'Bearer ', 'bearer  ', 'Basic', 'Negotiate', 'null', 'Bearer null', 'Bearer undefined'),
  wrongKey.map((k) => `Bearer ${k}`),
  key.map((k) => `Basic ${b64(`user:${k}`)}`),
  key.map((k) => `Basic ${b64(k)}`),
  key.map((k) => `Token ${k}`),
  key.map((k) => `ApiKey ${k}`),
  key,
  key.map((k) => `Bearer ${k}x`),
  key.map((k) => `Bearer x${k}`),
  key.map((k) => `Bearer ${k.toUpperCase()}`),
  key.map((k) => `Bearer ${k.slice(0, -1)}`),
  key.map((k) => `Bearer ${k} ${k}`),
  key.map((k) => `Bearer "${k}"`),
  key.map((k) => `Bearer=${k}`),
  key.map((k) => `Bearer:${k}`),
  key.map((k) => `Bearer ${k},`),
  key.map((k) => `Bearer\t${k}`), // a tab where RFC 7235 has 1*SP: `unclear` below
  fc.constantFrom(`Bearer ${HASHED_KEY_SHA}`, `Bearer sha256:${HASHED_KEY_SHA}`, `Bearer ${PLAIN_KEY},${HASHED_KEY}`),
  fc.integer({ min: 100, max: 8000 }).map((n) => `Bearer ${'k'.repeat(n)}`),
  headerValue(300),
);
const authorization: fc.Arbitrary<Credential> = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Credential>({ presents: 'none' }) },
  { weight: 3, arbitrary: validBearer.map(present('valid')) },
  {
    weight: 4,
    arbitrary: invalidAuthorization.map((value): Credential => ({ value, presents: /^Bearer\t\S+$/.test(value) ? 'unclear' : 'invalid' })),
  },
  // The header twice: Node keeps the first Authorization; the contract does not say which counts.
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.oneof(validBearer, invalidAuthorization), fc.oneof(validBearer, invalidAuthorization))
      .map(([first, second]): Credential => ({
        value: [first, second],
        presents: [first, second].some((value) => /^\s*bearer\s+fuzz-(plain|hashed)-key-[0-9a-f]+\s*$/i.test(value))
          ? 'unclear'
          : 'invalid',
      })),
  },
);

const invalidApiKey: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('', 'null', HASHED_KEY_SHA, `sha256:${HASHED_KEY_SHA}`, `${PLAIN_KEY},${HASHED_KEY}`, `${PLAIN_KEY} ${HASHED_KEY}`),
  wrongKey,
  key.map((k) => `Bearer ${k}`),
  key.map((k) => `${k}x`),
  key.map((k) => `x${k}`),
  key.map((k) => k.toUpperCase()),
  key.map((k) => k.slice(1)),
  key.map((k) => `"${k}"`),
  fc.integer({ min: 100, max: 8000 }).map((n) => 'k'.repeat(n)),
  headerValue(300),
);
/** Leading and trailing white space is not part of a header's value (RFC 9110 OWS). */
const validApiKey = fc.tuple(fc.constantFrom('', ' '), key, fc.constantFrom('', ' ')).map(([lead, k, tail]) => `${lead}${k}${tail}`);
const apiKey: fc.Arbitrary<Credential> = fc.oneof(
  { weight: 4, arbitrary: fc.constant<Credential>({ presents: 'none' }) },
  { weight: 2, arbitrary: validApiKey.map(present('valid')) },
  { weight: 3, arbitrary: invalidApiKey.map(present('invalid')) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.oneof(validApiKey, invalidApiKey), fc.oneof(validApiKey, invalidApiKey))
      .map(([first, second]): Credential => ({ value: [first, second], presents: 'unclear' })),
  },
);

/** Both headers together: a configured key let in, none kept out; one of each is left open by the contract. */
function accessOf(auth: Presents, xApiKey: Presents): Presents {
  if (auth === 'unclear' || xApiKey === 'unclear') return 'unclear';
  if (auth === 'valid' || xApiKey === 'valid') return auth === 'invalid' || xApiKey === 'invalid' ? 'unclear' : 'valid';
  return 'invalid';
}

const KNOWN_PATHS = [
  '/assistant/query',
  '/health/live',
  '/health/ready',
  '/health',
  '/health/circuit-breaker',
  '/docs',
  '/docs/json',
  '/docs/yaml',
  '/docs/swagger-ui-init.js',
  '/metrics',
  '/v1/chat/completions',
  '/v1/models',
  '/',
  '/assistant',
] as const;
const PATH_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&\'()*+,;=:@%/?#[]\\^`{|}"<>';
const segment: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('assistant', 'query', 'health', 'live', 'ready', 'circuit-breaker', 'docs', 'json', 'metrics', 'v1', '..', '.', ''),
  fc.constantFrom('%2e%2e', '%2E', '%2F', '%2f..', '%00', '%', '%zz', '%ff', '%c0%af', '%u002e', '..%2F', '%0d%0a', '%20', '+'),
  fc.string({ unit: charFrom(PATH_CHARS), maxLength: 20 }),
  fc.string({ unit: 'grapheme', maxLength: 10 }).map(encodeURIComponent),
  fc.string({ unit: charCode(0x80, 0xff), minLength: 1, maxLength: 4 }),
);
const queryString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('?', '?topK=5', '?query=x', '?a=1&a=2', '?__proto__[x]=1', '?constructor[prototype][x]=1', '?%', '??', '?#x'),
  fc.string({ unit: charFrom(PATH_CHARS), maxLength: 40 }).map((text) => `?${text}`),
  fc.string({ unit: 'grapheme', maxLength: 20 }).map((text) => `?q=${encodeURIComponent(text)}`),
);
const path: fc.Arbitrary<string> = fc.oneof(
  { weight: 12, arbitrary: fc.constant('/assistant/query') },
  { weight: 10, arbitrary: fc.constantFrom(...KNOWN_PATHS) },
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...KNOWN_PATHS), queryString).map(([known, query]) => `${known}${query}`) },
  {
    weight: 4,
    arbitrary: fc
      .tuple(
        fc.constantFrom(...KNOWN_PATHS),
        fc.constantFrom('/', '//', '/.', '/..', '/../', '%2F', '.json', '%00', 'X', '/index.html', '/../../etc/passwd'),
      )
      .map(([known, suffix]) => `${known}${suffix}`),
  },
  { weight: 2, arbitrary: fc.constantFrom(...KNOWN_PATHS).map((known) => known.toUpperCase()) },
  { weight: 2, arbitrary: fc.constantFrom('//assistant/query', '/assistant//query', '/./assistant/query', '/health/../assistant/query') },
  { weight: 6, arbitrary: fc.array(segment, { minLength: 1, maxLength: 6 }).map((segments) => `/${segments.join('/')}`) },
  { weight: 1, arbitrary: fc.constantFrom('*', 'assistant/query', 'http://127.0.0.1/health/live', '/%', '/%%', '/\\..\\..\\') },
  // past Node's 16 KiB header limit, or just under it
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 20_000 }).map((n) => `/assistant/${'a'.repeat(n)}`) },
);

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'] as const;
const method: fc.Arbitrary<string> = fc.oneof(
  { weight: 10, arbitrary: fc.constant('POST') },
  { weight: 10, arbitrary: fc.constantFrom(...METHODS) },
  // tokens Node's client sends as they are; unknown ones are refused by the server's parser
  { weight: 1, arbitrary: fc.constantFrom('TRACE', 'PROPFIND', 'SEARCH', 'QUERY', 'MKCOL', 'post', 'FOO', 'M-SEARCH', 'PURGE') },
);

const JSON_TYPES = ['application/json', 'application/json; charset=utf-8'] as const;
const contentType: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...JSON_TYPES) },
  {
    weight: 5,
    arbitrary: fc.constantFrom(
      undefined,
      'application/json;charset=UTF-8',
      'APPLICATION/JSON',
      'application/json; charset=utf-16',
      'application/json; charset=latin1',
      'application/json;',
      'application/json; charset="utf-8"; foo=bar',
      'application/jsonx',
      'application/json-patch+json',
      'application/vnd.api+json',
      'text/json',
      'text/plain',
      'text/plain; charset=utf-8',
      'text/html',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=fuzzboundary',
      'multipart/form-data',
      'application/octet-stream',
      'application/xml',
      '',
      ';',
      '/',
      'application/',
      '*/*',
      'application/json, text/plain',
      'application/json; charset=utf-8; charset=utf-16',
    ),
  },
  { weight: 1, arbitrary: headerValue(100) },
);

/** The two routes that answer questions (and need a key). */
type Route = 'answer' | 'chat';
const ROUTES: Record<string, Route> = { '/assistant/query': 'answer', '/v1/chat/completions': 'chat' };

/** A request body and what it is, for the oracles: a valid question for a route, or at least JSON Fastify parses. */
interface Body {
  raw?: string | Uint8Array;
  /** The route this body is a valid question for: the contract must answer it (200) given a key. */
  validFor?: Route;
  /** JSON that parses and is not refused for its keys (__proto__, constructor): with a JSON content type, it reaches the guard. */
  parsesAsJson: boolean;
  /** Its question is one the knowledge base has excerpts for. */
  known?: boolean;
}

/** Fastify's parser refuses `__proto__` and `constructor` keys (prototype poisoning) with a 400, before any guard. */
const POISONING = /"(?:__proto__|constructor)"\s*:/;
const json = (value: unknown, validFor?: Route, asked?: string): Body => {
  const raw = JSON.stringify(value);
  const known = asked !== undefined && (KNOWN_QUESTIONS as readonly string[]).includes(asked);
  return { raw, validFor, parsesAsJson: !POISONING.test(raw) && Buffer.byteLength(raw) <= BODY_LIMIT_BYTES, known };
};
const notJson = (raw: string | Uint8Array | undefined): Body => ({ raw, parsesAsJson: false });

/** A question the model is asked: non-blank, short enough, with a letter in it (the contract's "non-empty"). */
const question: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(...KNOWN_QUESTIONS, ...NONSENSE_QUESTIONS),
  fc.string({ unit: charCode(0x20, 0x7e), minLength: 1, maxLength: 300 }).map((text) => `q ${text}`),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 200 }).map((text) => `${text} why`),
  fc.integer({ min: 1990, max: MAX_QUERY_LENGTH }).map((n) => 'a'.repeat(n)),
);
const validTopK = fc.integer({ min: 1, max: 20 });
const badTopK: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(0, 21, -1, 1.5, 3.0000001, 1e21, -0.5, Number.MAX_SAFE_INTEGER + 2, null, true, '3', '', [3], { n: 3 }),
  fc.double(),
  fc.string({ maxLength: 5 }),
);
const badQuery: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom('', ' ', '\t\n', '\u00a0\u2003', null, 0, 1, true, false, [], ['What does half-open mean?'], {}, { query: 'x' }),
  fc.integer({ min: MAX_QUERY_LENGTH + 1, max: 10_000 }).map((n) => 'a'.repeat(n)),
  fc.integer({ min: 1000, max: 10_000 }).map((n) => '\u{1F600}'.repeat(n)),
  fc.double(),
  fc.jsonValue({ maxDepth: 2 }),
);

const deep = (depth: number, open: string, close: string, inner = '1') => `${open.repeat(depth)}${inner}${close.repeat(depth)}`;
const multipart = (text: string) => `--fuzzboundary\r\nContent-Disposition: form-data; name="query"\r\n\r\n${text}\r\n--fuzzboundary--\r\n`;

/** A Chat Completions request (POST /v1/chat/completions) the contract answers: the last user message is the question. */
const chatRole = fc.constantFrom('system', 'developer', 'assistant', 'user');
/** Messages before the question: earlier user messages would be checked as questions are, so none here. */
const earlierRole = fc.constantFrom('system', 'developer', 'assistant');
const validChatBody: fc.Arbitrary<Body> = fc
  .record(
    {
      before: fc.array(fc.record({ role: earlierRole, content: fc.string({ maxLength: 50 }) }), { maxLength: 2 }),
      question,
      parts: fc.boolean(),
      model: fc.constantFrom('tgi', 'gpt-4o-mini', 'anything/at-all'),
      stream: fc.boolean(),
      max_tokens: fc.integer({ min: 1, max: 4096 }),
      temperature: fc.double({ min: 0, max: 2, noNaN: true }),
    },
    { requiredKeys: ['before', 'question', 'parts'] },
  )
  .map(({ before, question, parts, ...options }) =>
    json(
      { messages: [...before, { role: 'user', content: parts ? [{ type: 'text', text: question }] : question }], ...options },
      'chat',
      question,
    ),
  );
const badChatBody: fc.Arbitrary<Body> = fc
  .oneof(
    fc.constantFrom<unknown>(
      {},
      { messages: [] },
      { messages: 'What does half-open mean?' },
      { messages: [{ role: 'system', content: 'only a system message' }] },
      { messages: [{ role: 'user' }] },
      { messages: [{ role: 'user', content: null }] },
      { messages: [{ role: 'user', content: '   ' }] },
      { messages: [{ role: 'user', content: 42 }] },
      { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] },
      { messages: [{ role: 'wizard', content: 'x' }] },
      { messages: [null] },
      { messages: [{ role: 'user', content: 'x' }], stream: 'yes' },
      { messages: [{ role: 'user', content: 'x' }], max_tokens: 0 },
      { messages: [{ role: 'user', content: 'x' }], max_tokens: 1.5 },
      { messages: [{ role: 'user', content: 'x' }], temperature: 2.5 },
      { messages: [{ role: 'user', content: 'x' }], temperature: -1 },
      { messages: [{ role: 'user', content: 'x' }], model: 7 },
      { messages: [{ role: 'user', content: 'a'.repeat(MAX_QUERY_LENGTH + 1) }] },
    ),
    fc.record({ messages: fc.array(fc.record({ role: fc.oneof(chatRole, fc.string()), content: fc.jsonValue({ maxDepth: 2 }) })) }),
    fc.record({ messages: fc.jsonValue({ maxDepth: 3 }), stream: fc.jsonValue({ maxDepth: 1 }) }, { requiredKeys: [] }),
  )
  .map((value) => json(value));

const body: fc.Arbitrary<Body> = fc.oneof(
  { weight: 4, arbitrary: validChatBody },
  { weight: 3, arbitrary: badChatBody },
  { weight: 8, arbitrary: fc.record({ query: question }).map((value) => json(value, 'answer')) },
  { weight: 3, arbitrary: fc.record({ query: question, topK: validTopK }).map((value) => json(value, 'answer')) },
  { weight: 3, arbitrary: fc.record({ query: question, topK: badTopK }).map((value) => json(value)) },
  { weight: 3, arbitrary: fc.record({ query: badQuery }, { requiredKeys: [] }).map((value) => json(value)) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        question,
        fc.string({ unit: charFrom('abcdefghijklmnopqrstuvwxyz_$'), minLength: 1, maxLength: 12 }),
        fc.jsonValue({ maxDepth: 3 }),
      )
      .filter(([, extra]) => extra !== 'query' && extra !== 'topK')
      .map(([query, extra, value]) => json({ query, [extra]: value })),
  },
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((value) => json(value)) },
  // keys Fastify's JSON parser refuses (prototype poisoning): a 400 before any guard, so not `parsesAsJson`
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        '{"query":"What does half-open mean?","__proto__":{"topK":5}}',
        '{"__proto__":{"query":"x"}}',
        '{"query":"x","constructor":{"prototype":{"polluted":true}}}',
        '[{"__proto__":null}]',
      )
      .map(notJson),
  },
  {
    weight: 3,
    arbitrary: fc
      .oneof(
        fc.constantFrom('', '{', '}', '{"query":', '{"query":"x"', '{"query":"x",}', "{'query':'x'}", '{query:"x"}', 'undefined', 'NaN'),
        fc.constantFrom(
          '\uFEFF{"query":"What does half-open mean?"}',
          '{"query":"x"}{"query":"y"}',
          '{"query":"\\ud800"}',
          '{"query":"\\u0000"}',
        ),
        fc.constantFrom('{"query":"x"} trailing', '{"query":1e999}', '{"topK":1e999,"query":"x"}', '{"query":"x","query":"y"}'),
        fc.string({ maxLength: 200 }),
        fc
          .tuple(fc.json({ maxDepth: 3 }), fc.nat())
          .map(([text, cut]) => text.slice(0, cut % Math.max(1, text.length)))
          .filter((text) => !isJson(text)),
      )
      .map(notJson),
  },
  // nesting deep enough to overflow a recursive walker's stack, within the body limit
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.integer({ min: 1, max: 10_000 }), fc.constantFrom('array', 'object', 'field', 'query'))
      .map(([depth, where]): Body => {
        const raw =
          where === 'array'
            ? deep(depth * 3, '[', ']')
            : where === 'object'
              ? deep(depth, '{"a":', '}')
              : where === 'field'
                ? `{"query":"x","a":${deep(depth * 3, '[', ']')}}`
                : `{"query":${deep(depth * 3, '[', ']', '"x"')}}`;
        // The app's JSON parser refuses nesting past MAX_JSON_NESTING with a 400 before any guard, like malformed JSON.
        return { raw, parsesAsJson: !jsonNestingExceeds(raw, MAX_JSON_NESTING) };
      }),
  },
  // around the body limit
  {
    weight: 2,
    arbitrary: fc.integer({ min: -64, max: 64 }).map((delta): Body => {
      const padding = BODY_LIMIT_BYTES + delta - '{"query":""}'.length;
      return { raw: `{"query":"${'a'.repeat(padding)}"}`, parsesAsJson: delta <= 0 };
    }),
  },
  { weight: 1, arbitrary: fc.integer({ min: BODY_LIMIT_BYTES, max: 4 * BODY_LIMIT_BYTES }).map((n) => notJson('x'.repeat(n))) },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 1000, max: 10_000 })
      .map((n) => json({ query: 'What does half-open mean?', pad: '\u0000\u2028"\\'.repeat(n) })),
  },
  { weight: 2, arbitrary: question.map((text) => notJson(`query=${encodeURIComponent(text)}&topK=3`)) },
  { weight: 1, arbitrary: question.map((text) => notJson(multipart(text))) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 2000 }).map(notJson) },
  { weight: 3, arbitrary: fc.constant(notJson(undefined)) },
);

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * Headers beyond the credentials; those that change how the server reads the request make the oracles stand down.
 * The body's framing (Content-Length, Transfer-Encoding) is the client's here, and the raw property's below.
 */
const SPECIAL_HEADERS = ['expect', 'content-encoding', 'connection', 'upgrade', 'te', 'trailer', 'x-http-method-override'] as const;
const extraHeader: fc.Arbitrary<[string, string]> = fc.oneof(
  fc.tuple(
    token(1, 20).map((name) => `x-fuzz-${name}`),
    headerValue(200),
  ),
  fc.tuple(
    fc.constantFrom(
      'accept-encoding',
      'range',
      'if-none-match',
      'if-modified-since',
      'origin',
      'cookie',
      'x-forwarded-for',
      'x-forwarded-proto',
      'x-forwarded-host',
      'forwarded',
      'user-agent',
      'referer',
      'access-control-request-method',
      'accept-language',
      'x-real-ip',
      'sec-fetch-mode',
    ),
    fc.oneof(fc.constantFrom('*', 'gzip, br', 'bytes=0-10', 'null', '127.0.0.1, ::1', 'for=unknown', 'https'), headerValue(100)),
  ),
  fc.tuple(
    fc.constantFrom(...SPECIAL_HEADERS),
    fc.oneof(
      fc.constantFrom('100-continue', '200-ok', 'gzip', 'deflate', 'identity', 'br', 'chunked', 'websocket', 'trailers', 'GET', 'x'),
      headerValue(30),
    ),
  ),
);
const requestId = fc.option(fc.oneof(printable(200), fc.uuid(), headerValue(40), fc.constantFrom('', ' ', 'a'.repeat(129))), {
  nil: undefined,
});
/** undefined: no Accept; text/event-stream asks the answer route for a stream. */
const accept = fc.oneof(
  { weight: 4, arbitrary: fc.constant(undefined) },
  { weight: 3, arbitrary: fc.constantFrom('text/event-stream', 'text/event-stream, application/json;q=0.5') },
  {
    weight: 2,
    arbitrary: fc.oneof(
      fc.constantFrom(
        'application/json',
        '*/*',
        'text/html',
        'application/xml',
        '',
        'application/json;q=0',
        'image/*',
        'text/event-stream;q=0',
      ),
      printable(60),
    ),
  },
);
/** undefined: Node sets Host itself; null: no Host header at all. */
const host = fc.oneof(
  { weight: 8, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.constant(null) },
  {
    weight: 1,
    arbitrary: fc.oneof(fc.constantFrom('', 'localhost', 'evil.example', '127.0.0.1:1', '[::1]', 'a b', 'x'.repeat(300)), printable(40)),
  },
);

interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  body?: string | Uint8Array;
  /** Send the body chunked instead of with a Content-Length. */
  chunked: boolean;
  setHost: boolean;
  access: Presents;
  /** The answer route the request is a POST to, with a JSON content type and nothing that changes how the server reads it. */
  plainTo?: Route;
  /** The body is a valid question for that route. */
  validBody: boolean;
  parsesAsJson: boolean;
  /** The question is one the knowledge base has excerpts for. */
  known: boolean;
}

interface RequestParts {
  method: string;
  path: string;
  auth: Credential;
  xApiKey: Credential;
  contentType: string | undefined;
  body: Body;
  chunked: boolean;
  requestId: string | undefined;
  accept: string | undefined;
  host: string | null | undefined;
  extra: [string, string][];
}

function requestFrom({
  method,
  path,
  auth,
  xApiKey,
  contentType,
  body,
  chunked,
  requestId,
  accept,
  host,
  extra,
}: RequestParts): FuzzRequest {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of extra) headers[name] = value;
  if (auth.value !== undefined) headers['authorization'] = auth.value;
  if (xApiKey.value !== undefined) headers['x-api-key'] = xApiKey.value;
  if (contentType !== undefined) headers['content-type'] = contentType;
  if (requestId !== undefined) headers['x-request-id'] = requestId;
  if (accept !== undefined) headers['accept'] = accept;
  if (typeof host === 'string') headers['host'] = host;
  const special = extra.some(([name]) => (SPECIAL_HEADERS as readonly string[]).includes(name));
  const route = method === 'POST' ? ROUTES[pathnameOf(path)] : undefined;
  const plain = !special && host === undefined && (JSON_TYPES as readonly (string | undefined)[]).includes(contentType);
  return withDescription({
    method,
    path,
    headers,
    body: body.raw,
    chunked: chunked && body.raw !== undefined,
    setHost: host !== null,
    access: accessOf(auth.presents, xApiKey.presents),
    plainTo: plain ? route : undefined,
    validBody: route !== undefined && body.validFor === route,
    parsesAsJson: body.parsesAsJson,
    known: body.known ?? false,
  });
}

/** fast-check prints a counterexample with this: the request as sent, a 30 KB body cut to its ends. */
function withDescription(request: FuzzRequest): FuzzRequest {
  return Object.defineProperty(request, fc.toStringMethod, { value: () => describeRequest(request), enumerable: false });
}

/** Every part random. */
const randomRequest: fc.Arbitrary<FuzzRequest> = fc
  .record({
    method,
    path,
    auth: authorization,
    xApiKey: apiKey,
    contentType,
    body,
    chunked: fc.boolean(),
    requestId,
    accept,
    host,
    extra: fc.array(extraHeader, { maxLength: 3 }),
  })
  .map(requestFrom);

/** Mostly right, each part now and then random: far enough in to reach the guard, the pipes, the breaker and the model. */
const usually = <T>(right: fc.Arbitrary<T>, random: fc.Arbitrary<T>, weight = 5) =>
  fc.oneof({ weight, arbitrary: right }, { weight: 1, arbitrary: random });
const none = fc.constant<Credential>({ presents: 'none' });
const validAnswerBody: fc.Arbitrary<Body> = fc
  .record({ query: question, topK: fc.option(validTopK, { nil: undefined }) })
  .map((value) => json(value, 'answer', value.query));
const nearlyValidParts = (routePath: string, validBody: fc.Arbitrary<Body>) =>
  fc.record({
    method: usually(fc.constant('POST'), method),
    path: usually(fc.constant(routePath), path),
    auth: usually(fc.oneof(validBearer.map(present('valid')), none), authorization, 3),
    xApiKey: usually(fc.oneof(none, validApiKey.map(present('valid'))), apiKey, 3),
    contentType: usually(fc.constantFrom(...JSON_TYPES), contentType),
    body: usually(validBody, body, 2),
    chunked: fc.boolean(),
    requestId,
    accept,
    host: usually(fc.constant(undefined), host, 9),
    extra: usually(fc.constant<[string, string][]>([]), fc.array(extraHeader, { maxLength: 2 }), 3),
  });
const nearlyValidRequest: fc.Arbitrary<FuzzRequest> = fc
  .oneof(
    { weight: 3, arbitrary: nearlyValidParts('/assistant/query', validAnswerBody) },
    { weight: 1, arbitrary: nearlyValidParts('/v1/chat/completions', validChatBody) },
  )
  .map(requestFrom);

const fuzzRequest: fc.Arbitrary<FuzzRequest> = fc.oneof(randomRequest, nearlyValidRequest);

// ---------------------------------------------------------------------------------------------------------------
// The client: node:http sends what is generated, as it is; every response is read to the end
// ---------------------------------------------------------------------------------------------------------------

interface Exchange {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/** Errors Node's client raises before sending anything: the generator produced something no client can send. */
const UNSENDABLE = new Set([
  'ERR_INVALID_CHAR',
  'ERR_UNESCAPED_CHARACTERS',
  'ERR_INVALID_HTTP_TOKEN',
  'ERR_HTTP_INVALID_HEADER_VALUE',
  'ERR_HTTP_TRAILER_INVALID',
]);

/**
 * A loopback address of its own for each connection (all of 127/8 is the loopback interface on Linux): each fuzzed
 * request is a client of its own, so the budget of failed key checks per address (access.e2e-spec.ts) does not turn
 * the thousands of wrong keys sent here into 429s.
 */
let connections = 0;
function nextClientAddress(): string {
  connections += 1;
  return `127.${1 + (Math.floor(connections / 65_536) % 254)}.${Math.floor(connections / 256) % 256}.${1 + (connections % 254)}`;
}

/** The response, or the error that ended the exchange without one (a connection the server dropped). */
function send(request: FuzzRequest): Promise<Exchange | { error: string }> {
  return new Promise((resolve, reject) => {
    const headers: OutgoingHttpHeaders = { ...request.headers };
    if (request.body !== undefined) {
      if (request.chunked) headers['transfer-encoding'] = 'chunked';
      else headers['content-length'] = Buffer.byteLength(request.body);
    }
    let outgoing;
    try {
      outgoing = httpRequest({
        host: '127.0.0.1',
        port,
        localAddress: nextClientAddress(),
        method: request.method,
        path: request.path,
        headers,
        setHost: request.setHost,
        agent: false, // a connection of its own, closed after the response
      });
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code !== undefined && UNSENDABLE.has(code)) return resolve({ error: `unsendable: ${code}` });
      return reject(error);
    }
    outgoing.setTimeout(15_000, () => outgoing.destroy(new Error('no response within 15 s')));
    outgoing.on('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers, text: Buffer.concat(chunks).toString('latin1') }),
      );
      response.on('error', (error) => resolve({ error: `response: ${error.message}` }));
    });
    outgoing.on('error', (error: Error & { code?: string; rawPacket?: Buffer }) => {
      // A response Node's client cannot parse is still an answer: the server's reply to a request it could not
      // parse carries a body even for HEAD, which the client, knowing it sent HEAD, takes for a second response.
      const raw = error.rawPacket?.toString('latin1');
      const parsed = raw === undefined ? undefined : parseRawResponse(raw);
      resolve(parsed ?? { error: error.code ?? error.message });
    });
    try {
      outgoing.end(request.body);
    } catch (error) {
      outgoing.destroy();
      const code = (error as { code?: string }).code;
      if (code !== undefined && UNSENDABLE.has(code)) return resolve({ error: `unsendable: ${code}` });
      reject(error);
    }
  });
}

/** A response as raw text: its status, headers (names in lower case) and body; undefined if it is not one. */
function parseRawResponse(raw: string): Exchange | undefined {
  const match = /^HTTP\/1\.[01] (\d{3})[^\r\n]*\r\n([\s\S]*?)\r\n\r\n([\s\S]*)$/.exec(raw);
  if (!match) return undefined;
  const headers: IncomingHttpHeaders = {};
  for (const line of (match[2] ?? '').split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(match[1]), headers, text: match[3] ?? '' };
}

// ---------------------------------------------------------------------------------------------------------------
// What every response must be
// ---------------------------------------------------------------------------------------------------------------

/** A V8 stack frame, `at fn (file:line:col)` or `at file:line:col`. */
const STACK_FRAME = /\bat (?:async )?(?:\S+ )?\(?(?:file:\/\/|node:|\/)[^\s()]*:\d+:\d+\)?/;
const INTERNALS = [/node_modules[/\\]/, new RegExp(escapeRegExp(process.cwd())), /\b(?:TypeError|RangeError|ReferenceError)\b/];

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The whole response as text: headers and body, for searching. */
function wholeText(exchange: Exchange): string {
  return `${Object.entries(exchange.headers)
    .map(([name, value]) => `${name}: ${String(value)}`)
    .join('\n')}\n\n${exchange.text}`;
}

function expectNothingLeaked(text: string, isScript: boolean): void {
  for (const secret of SECRETS) expect(text).not.toContain(secret);
  // Swagger UI's own bundle is minified JavaScript, not an error: only secrets are looked for in it.
  if (isScript) return;
  expect(text).not.toMatch(STACK_FRAME);
  for (const internal of INTERNALS) expect(text).not.toMatch(internal);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * A 4xx's body: the app's JSON error (`statusCode`, `message`), or OpenAI's (`error.message`, `error.type`) under /v1,
 * which is the only shape a Chat Completions request that reached its route may get.
 */
function expectJsonError(request: FuzzRequest, exchange: Exchange): void {
  const parsed = parseJson(exchange.text) as
    { statusCode?: unknown; message?: unknown; error?: { message?: unknown; type?: unknown } } | undefined;
  expect(parsed).toEqual(expect.any(Object));
  if (request.plainTo === 'chat' || (typeof parsed?.error === 'object' && parsed.error !== null)) {
    expect(parsed).toMatchObject({ error: { message: expect.any(String), type: expect.any(String) } });
    return;
  }
  expect(parsed?.statusCode).toBe(exchange.status);
  expect(typeof parsed?.message === 'string' || Array.isArray(parsed?.message)).toBe(true);
}

/** A 200 event stream ends as the contract says: `event: done` with the answer, or `data: [DONE]` for Chat Completions. */
function expectCompleteStream(pathname: string, text: string): void {
  if (ROUTES[pathname] === 'chat') {
    expect(text).toMatch(/data: \[DONE\]\n\n$/);
    return;
  }
  const done = /^event: done\ndata: (.*)\n\n$/m.exec(text);
  expect(done).not.toBeNull();
  expect(parseJson(done?.[1] ?? '')).toMatchObject({ answer: expect.any(String), source: expect.stringMatching(/^(llm|cache|excerpts)$/) });
}

/** The contract's 503s: the answer route's `{statusCode, error, message, reason, retryAfterSeconds, circuit}` with Retry-After, or Terminus' health body. */
function expectContract503(request: FuzzRequest, exchange: Exchange): void {
  expect(exchange.status).toBe(503);
  const pathname = pathnameOf(request.path);
  const parsed = parseJson(exchange.text);
  if (request.method === 'HEAD') return; // no body to look at
  if (pathname.startsWith('/health')) {
    expect(parsed).toMatchObject({ status: 'error', error: expect.any(Object), details: expect.any(Object) });
    return;
  }
  const retryAfter = exchange.headers['retry-after'];
  expect(retryAfter).toMatch(/^\d+$/);
  if (pathname.startsWith('/v1')) {
    expect(parsed).toMatchObject({ error: { message: expect.any(String), type: expect.any(String) } });
    return;
  }
  expect(parsed).toMatchObject({
    statusCode: 503,
    error: 'Service Unavailable',
    message: expect.any(String),
    reason: expect.any(String),
    retryAfterSeconds: Number(retryAfter),
    circuit: { name: 'huggingface', state: expect.stringMatching(/^(closed|open|half_open)$/) },
  });
}

/** Health, /metrics and /docs never need a key. */
const PUBLIC_ROUTES = /^\/(?:health|metrics|docs)\b/;

/**
 * Sends `request` and checks the response against everything the contract promises any caller; `upstreamDown`
 * allows the one 5xx the contract has, its 503.
 */
async function exchangeAndCheck(request: FuzzRequest, upstreamDown: boolean): Promise<Exchange | undefined> {
  const result = await send(request);
  if ('error' in result) {
    fc.pre(!result.error.startsWith('unsendable'));
    // A request Node's parser refuses (a path past 16 KiB, an unknown method, no Host) may see its connection closed; any other must be answered.
    const refusedByParser = request.path.length > 8000 || !(METHODS as readonly string[]).includes(request.method) || !request.setHost;
    if (!refusedByParser) throw new Error(`no response (${result.error}) to ${describeRequest(request)}`);
    return undefined;
  }
  try {
    checkResponse(request, result, upstreamDown);
  } catch (error) {
    // the request as sent and what came back, besides fast-check's counterexample
    const { 'content-type': type, 'retry-after': retryAfter, 'www-authenticate': challenge } = result.headers;
    const headers = JSON.stringify({ 'content-type': type, 'retry-after': retryAfter, 'www-authenticate': challenge });
    (error as Error).message +=
      `\n\nrequest: ${describeRequest(request)}\nresponse: ${result.status} ${headers}\n${abbreviate(result.text, 1000)}`;
    throw error;
  }
  return result;
}

/** The path the server routes: no scheme and authority (absolute-form), no query. */
function pathnameOf(path: string): string {
  return path.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?]*/i, '').split('?')[0] ?? '';
}

function checkResponse(request: FuzzRequest, result: Exchange, upstreamDown: boolean): void {
  const pathname = pathnameOf(request.path);
  // with the model healthy no 5xx is legitimate; with it out, only the contract's 503
  if (!upstreamDown) expect(result.status).toBeLessThan(500);
  else if (result.status >= 500) expectContract503(request, result);
  expectNothingLeaked(wholeText(result), /javascript/.test(String(result.headers['content-type'])));
  if (result.status === 401) expect(result.headers['www-authenticate']).toMatch(/^Bearer\b/);
  if (result.status >= 400 && result.status < 500 && request.method !== 'HEAD' && (result.text !== '' || request.plainTo)) {
    expectJsonError(request, result);
  }
  // Nothing but the public routes answers a caller without a configured key.
  if (result.status < 300 && request.access === 'invalid') expect(pathname).toMatch(PUBLIC_ROUTES);
  if (request.plainTo && request.parsesAsJson && request.access === 'invalid') expect(result.status).toBe(401);
  if (request.plainTo && request.access === 'valid') expect(result.status).not.toBe(401);
  if (request.plainTo && request.validBody && request.access === 'valid') {
    // answered; with the model out, the contract's 503 when nothing is left to answer from, never for a question the excerpts answer
    expect(result.status).toBe(upstreamDown && result.status === 503 && !request.known ? 503 : 200);
  }
  if (result.status === 200 && /^text\/event-stream/.test(String(result.headers['content-type'])))
    expectCompleteStream(pathname, result.text);
}

/** Long texts cut in the middle, with their length: a shrunk counterexample stays readable. */
function abbreviate(text: string, keep = 120): string {
  return text.length <= 2 * keep ? text : `${text.slice(0, keep)}…(${text.length} characters)…${text.slice(-keep)}`;
}

/** The request as sent: method, path, headers and body, long values abbreviated. */
function describeRequest(request: FuzzRequest): string {
  const bodyText =
    request.body === undefined
      ? '(none)'
      : typeof request.body === 'string'
        ? JSON.stringify(request.body)
        : `bytes ${Buffer.from(request.body).toString('hex')}`;
  const headers = Object.entries(request.headers).map(([name, value]) => `${name}: ${abbreviate(JSON.stringify(value), 60)}`);
  const framing = request.chunked ? ', chunked' : '';
  return `${request.method} ${abbreviate(request.path, 60)} [${headers.join('; ')}${request.setHost ? '' : '; (no Host)'}] body${framing} ${abbreviate(bodyText)}`;
}

async function expectAppAlive(): Promise<void> {
  const response = await fetch(`${testApp.url}/health/live`);
  expect(response.status).toBe(200);
  await response.arrayBuffer();
  expect(processErrors).toEqual([]);
}

// ---------------------------------------------------------------------------------------------------------------
// Raw bytes over node:net: what no well-behaved client sends (bad request lines, header syntax, body framing)
// ---------------------------------------------------------------------------------------------------------------

const rawHeaderLine: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.constantFrom(
      'Content-Type: application/json',
      'Content-Type: application/json; charset=utf-8',
      `Authorization: Bearer ${PLAIN_KEY}`,
      `x-api-key: ${HASHED_KEY}`,
      'Accept: text/event-stream',
      'Authorization: Bearer wrong',
      'Content-Type: text/plain',
    ),
  },
  fc.constantFrom(
    'NoColonHere',
    ': no-name',
    ' Leading: space',
    'Space Name: x',
    'Name : space-before-colon',
    'Tab\tName: x',
    'X-Fold: a\r\n folded',
    'X-Nul: a\u0000b',
    'X-CR: a\rb',
    'X-Del: \u007f',
    'Expect: 100-continue',
    'Expect: nope',
    'Connection: upgrade',
    'Upgrade: websocket',
    'Upgrade: h2c',
    'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA',
    'x-request-id: \u0001',
    'Content-Type: application/json\u0000',
  ),
  { weight: 2, arbitrary: fc.tuple(token(1, 20), headerValue(100)).map(([name, value]) => `${name}: ${value}`) },
  { weight: 1, arbitrary: fc.integer({ min: 8000, max: 20_000 }).map((n) => `X-Big: ${'b'.repeat(n)}`) },
);

const FRAMINGS = [
  'length',
  'none',
  'shorter',
  'longer',
  'negative',
  'not-a-number',
  'twice',
  'conflicting',
  'chunked',
  'bad-chunks',
  'unterminated-chunks',
  'chunked-and-length',
  'gzip-chunked',
  'xchunked',
] as const;

interface RawRequest {
  head: string;
  body: string;
  /** Another request on the same connection after this one. */
  pipelined: boolean;
}

const rawRequest: fc.Arbitrary<RawRequest> = fc
  .record({
    method: fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom('GET', 'POST', 'POST', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS') },
      { weight: 1, arbitrary: fc.constantFrom('CONNECT', 'PRI', 'FOO', 'get', '', 'G\tET', 'POST /x', 'TRACE', 'POST\u0000') },
    ),
    target: fc.oneof(
      { weight: 8, arbitrary: path },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          '*',
          '',
          'http://127.0.0.1/health/live',
          'https://evil.example/assistant/query',
          '127.0.0.1:80',
          '/assistant/query HTTP/1.1',
          '/\u0000',
          '/a b',
          '/\u007f',
          '/\u00ff',
        ),
      },
    ),
    version: fc.oneof(
      { weight: 8, arbitrary: fc.constant('HTTP/1.1') },
      {
        weight: 1,
        arbitrary: fc.constantFrom('HTTP/1.0', 'HTTP/2.0', 'HTTP/1.2', 'HTTP/0.9', 'HTTP/3', '', 'http/1.1', 'HTTP/11', 'HTTP/1.1 '),
      },
    ),
    eol: fc.oneof({ weight: 8, arbitrary: fc.constant('\r\n') }, { weight: 1, arbitrary: fc.constantFrom('\n', '\r') }),
    host: fc.oneof(
      { weight: 8, arbitrary: fc.constant('Host: localhost') },
      { weight: 1, arbitrary: fc.constantFrom('', 'Host:', 'Host: a\r\nHost: b', 'Host: a b') },
    ),
    headers: fc.array(rawHeaderLine, { maxLength: 5 }),
    framing: fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom('length', 'chunked') },
      { weight: 2, arbitrary: fc.constantFrom(...FRAMINGS) },
    ),
    body: body.map((generated) => (typeof generated.raw === 'string' ? generated.raw : '')),
    close: fc.boolean(),
    pipelined: fc.boolean(),
  })
  .map(({ method, target, version, eol, host, headers, framing, body, close, pipelined }): RawRequest => {
    const length = Buffer.byteLength(body);
    const chunked = `${length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    const [framingHeaders, framedBody] = ((): [string[], string] => {
      switch (framing) {
        case 'length':
          return [[`Content-Length: ${length}`], body];
        case 'none':
          return [[], body];
        case 'shorter':
          return [[`Content-Length: ${Math.max(0, length - 3)}`], body];
        case 'longer':
          return [[`Content-Length: ${length + 10}`], body];
        case 'negative':
          return [['Content-Length: -1'], body];
        case 'not-a-number':
          return [['Content-Length: 1e3'], body];
        case 'twice':
          return [[`Content-Length: ${length}`, `Content-Length: ${length}`], body];
        case 'conflicting':
          return [[`Content-Length: ${length}`, `Content-Length: ${length + 1}`], body];
        case 'chunked':
          return [['Transfer-Encoding: chunked'], chunked];
        case 'bad-chunks':
          return [['Transfer-Encoding: chunked'], `zz\r\n${body}\r\n0\r\n\r\n`];
        case 'unterminated-chunks':
          return [['Transfer-Encoding: chunked'], `${(length + 5).toString(16)}\r\n${body}`];
        case 'chunked-and-length':
          return [['Transfer-Encoding: chunked', `Content-Length: ${length}`], chunked];
        case 'gzip-chunked':
          return [['Transfer-Encoding: gzip, chunked'], chunked];
        case 'xchunked':
          return [['Transfer-Encoding: xchunked'], body];
      }
    })();
    const lines = [`${method} ${target} ${version}`, host, ...headers, ...framingHeaders, ...(close ? ['Connection: close'] : [])].filter(
      (line) => line !== '',
    );
    const raw = { head: `${lines.join(eol)}${eol}${eol}`, body: framedBody, pipelined };
    return Object.defineProperty(raw, fc.toStringMethod, {
      value: () =>
        `${abbreviate(JSON.stringify(raw.head), 400)} body ${abbreviate(JSON.stringify(raw.body))}${pipelined ? ' + pipelined GET' : ''}`,
      enumerable: false,
    });
  });

const PIPELINED = 'GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n';

/** Writes the bytes, half-closes, and reads until the server closes: everything it answered, as Latin-1 text. */
function sendRaw(request: RawRequest): Promise<{ received: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress: nextClientAddress() });
    const chunks: Buffer[] = [];
    let timedOut = false;
    // past the app's own request time-out, which must have ended the connection by then
    const timer = setTimeout(() => {
      timedOut = true;
      socket.destroy();
    }, 15_000);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => undefined); // a reset is an answer too: what was received is checked
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(chunks).toString('latin1'), timedOut });
    });
    socket.write(Buffer.concat([Buffer.from(request.head, 'latin1'), Buffer.from(request.body, 'utf8')]));
    if (request.pipelined) socket.write(PIPELINED);
    socket.end();
  });
}

/** The status codes of the responses in a raw exchange (a response's body could hold the text too: only line starts count). */
function statusCodes(received: string): number[] {
  return [...received.matchAll(/(?:^|\r\n)HTTP\/\d\.\d (\d{3}) /g)].map((match) => Number(match[1]));
}

// ---------------------------------------------------------------------------------------------------------------
// The upstream failing in every way the fake knows (no hang nor stall before the first token: each would wait out the
// 5 s call time-out; a stall mid-stream waits out the 0.5 s idle time-out)
// ---------------------------------------------------------------------------------------------------------------

const upstreamFault: fc.Arbitrary<Fault> = fc.constantFrom<Fault>(
  { kind: 'ok' },
  { kind: 'error500' },
  { kind: 'loading503', estimatedTimeSeconds: 1 },
  { kind: 'rateLimited429', retryAfterSeconds: 1 },
  { kind: 'rateLimited429' },
  { kind: 'badRequest' },
  { kind: 'unprocessable' },
  { kind: 'payloadTooLarge' },
  { kind: 'templateError' },
  { kind: 'tokenLimit' },
  { kind: 'requestTimeout' },
  { kind: 'unknownModel' },
  { kind: 'unauthorized' },
  { kind: 'paymentRequired' },
  { kind: 'forbidden' },
  { kind: 'reset' },
  { kind: 'malformed' },
  { kind: 'truncated' },
  { kind: 'missingFields' },
  { kind: 'flapping', every: 2 },
  { kind: 'slowTokens', tokenIntervalMs: 5 },
  { kind: 'stallMidStream' },
  { kind: 'cutMidStream' },
  { kind: 'errorMidStream' },
  { kind: 'errorMidStream', errorShape: 'errorResponse' },
  { kind: 'malformedChunk' },
);

/** A valid question to either answer route with a configured key: 200, or the contract's 503 when nothing is left to answer from. */
const answerRequest: fc.Arbitrary<FuzzRequest> = fc
  .record({
    route: fc.oneof(
      { weight: 3, arbitrary: fc.tuple(fc.constant('/assistant/query'), validAnswerBody) },
      { weight: 1, arbitrary: fc.tuple(fc.constant('/v1/chat/completions'), validChatBody) },
    ),
    credentials: fc.oneof(fc.tuple(validBearer.map(present('valid')), none), fc.tuple(none, validApiKey.map(present('valid')))),
    contentType: fc.constantFrom(...JSON_TYPES),
    chunked: fc.boolean(),
    accept: fc.constantFrom(undefined, 'application/json', 'text/event-stream'),
  })
  .map(({ route: [path, body], credentials: [auth, xApiKey], contentType, chunked, accept }) =>
    requestFrom({
      method: 'POST',
      path,
      auth,
      xApiKey,
      contentType,
      body,
      chunked,
      requestId: undefined,
      accept,
      host: undefined,
      extra: [],
    }),
  );

// ---------------------------------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------------------------------

describe('the HTTP edge under random requests', () => {
  it('with the model healthy: never a 5xx, a 401 with WWW-Authenticate for every caller without a key, JSON errors, nothing leaked', async () => {
    upstream.setFault({ kind: 'ok' });
    await fc.assert(
      fc.asyncProperty(fuzzRequest, async (request) => {
        await exchangeAndCheck(request, false);
      }),
      propertyRunParameters(HEALTHY_RUNS),
    );
    await expectAppAlive();
  }, 180_000);
  it('with raw malformed bytes: every response under 500, nothing leaked, every connection ended', async () => {
    upstream.setFault({ kind: 'ok' });
    await fc.assert(
      fc.asyncProperty(rawRequest, async (request) => {
        const { received, timedOut } = await sendRaw(request);
        expect(timedOut).toBe(false);
        for (const status of statusCodes(received)) expect(status).toBeLessThan(500);
        expectNothingLeaked(received, false);
      }),
      propertyRunParameters(RAW_RUNS),
    );
    await expectAppAlive();
  }, 180_000);

  it("with the model failing in every way: the only 5xx is the contract's 503 (Retry-After, its JSON body), a known question is always answered", async () => {
    await fc.assert(
      fc.asyncProperty(
        upstreamFault,
        fc.array(fc.oneof({ weight: 3, arbitrary: answerRequest }, { weight: 1, arbitrary: fuzzRequest }), { minLength: 1, maxLength: 3 }),
        async (fault, requests) => {
          upstream.setFault(fault);
          for (const request of requests) await exchangeAndCheck(request, true);
        },
      ),
      propertyRunParameters(FAILING_RUNS),
    );
    upstream.setFault({ kind: 'ok' });
    await expectAppAlive();
  }, 180_000);
});
