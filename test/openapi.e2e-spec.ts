// The API documentation: the OpenAPI document at /docs/json lists the contract, and the bodies the app really sends fit it.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Ajv, type ValidateFunction } from 'ajv';
import ajvFormats from 'ajv-formats';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import { ask, getHealth, type HttpResult, postRaw } from './support/http.js';
import { startTestApp, type TestApp } from './support/test-app.js';

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  enum?: unknown[];
  nullable?: boolean;
  minimum?: number;
  maximum?: number;
  default?: unknown;
  $ref?: string;
}

interface Operation {
  requestBody?: { content: Record<string, { schema: Schema }> };
  security?: Array<Record<string, string[]>>;
  responses: Record<string, { headers?: Record<string, { schema: Schema }>; content?: Record<string, { schema: Schema }> }>;
}

interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema>; securitySchemes?: Record<string, Record<string, string>> };
}

/** The contract's routes and the statuses it promises for each (CONTRACT.md). */
const CONTRACT_ROUTES: Array<[method: string, path: string, statuses: string[]]> = [
  ['post', '/assistant/query', ['200', '400', '401', '413', '415', '429', '503']],
  ['get', '/health/live', ['200']],
  ['get', '/health/ready', ['200', '503']],
  ['get', '/health/circuit-breaker', ['200', '503']],
  ['get', '/health', ['200', '503']],
  ['post', '/v1/chat/completions', ['200', '400', '401', '413', '415', '429', '503']],
  ['get', '/v1/models', ['200', '401']],
];
// `coalesced` comes with Coalescing (an open issue).
const ANSWER_FIELDS = [
  'answer',
  'source',
  'degraded',
  'fallbackReason',
  'excerpts',
  'circuit',
  'model',
  'failover',
  'coalesced',
  'cachedAt',
  'retryAfterSeconds',
];
/** Fields a body has only sometimes. */
const OPTIONAL_ANSWER_FIELDS = ['model', 'failover', 'coalesced', 'cachedAt', 'retryAfterSeconds'];
const UNAVAILABLE_FIELDS = ['statusCode', 'error', 'message', 'reason', 'retryAfterSeconds', 'circuit'];

let upstream: FakeHfUpstream;
let testApp: TestApp;
let document: OpenApiDocument;
let served: Response;

beforeAll(async () => {
  upstream = await FakeHfUpstream.start();
  testApp = await startTestApp({ HF_ENDPOINT_URL: upstream.url, CIRCUIT_BREAKER_RESET_TIMEOUT: '30' });
  served = await fetch(`${testApp.url}/docs/json`);
  document = (await served.json()) as OpenApiDocument;
});

afterAll(async () => {
  await testApp?.close();
  await upstream?.close();
});

function operation(method: string, path: string): Operation {
  const found = document.paths[path]?.[method];
  if (!found) throw new Error(`${method.toUpperCase()} ${path} is not in the document`);
  return found;
}

/** The schema a `$ref` (or the schema itself) names in components. */
function resolve(schema: Schema | undefined): Schema {
  const ref = schema?.$ref;
  if (!ref) return schema ?? {};
  const resolved = document.components.schemas[ref.replace('#/components/schemas/', '')];
  if (!resolved) throw new Error(`${ref} is not in components.schemas`);
  return resolved;
}

function responseSchema(method: string, path: string, status: string): Schema {
  return resolve(operation(method, path).responses[status]?.content?.['application/json']?.schema);
}

/** An ajv validator for one response of the document (OpenAPI 3.0 schemas are JSON Schema plus `nullable`, which ajv knows). */
function validatorFor(method: string, path: string, status: string): ValidateFunction {
  const ajv = new Ajv({ strict: false, allErrors: true });
  ajvFormats.default(ajv);
  const definitions = JSON.parse(
    JSON.stringify(document.components.schemas).replaceAll('#/components/schemas/', '#/definitions/'),
  ) as object;
  const schema = JSON.parse(
    JSON.stringify(operation(method, path).responses[status]?.content?.['application/json']?.schema ?? {}).replaceAll(
      '#/components/schemas/',
      '#/definitions/',
    ),
  ) as object;
  return ajv.compile({ ...schema, definitions });
}

/** POST /v1/chat/completions with `body` as JSON, read to the end. */
async function complete(url: string, body: unknown, headers: Record<string, string> = {}): Promise<HttpResult<unknown>> {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, body: JSON.parse(text) as unknown };
}

async function listModels(url: string, headers: Record<string, string> = {}): Promise<HttpResult<unknown>> {
  const response = await fetch(`${url}/v1/models`, { headers });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, body: JSON.parse(text) as unknown };
}

function expectDocumented(method: string, path: string, result: HttpResult<unknown>): void {
  const validate = validatorFor(method, path, String(result.status));
  expect({ status: result.status, valid: validate(result.body), errors: validate.errors ?? [] }).toEqual({
    status: result.status,
    valid: true,
    errors: [],
  });
}

describe('GET /docs/json', () => {
  it('serves an OpenAPI 3 document as JSON, titled and versioned like the package', () => {
    expect(served.status).toBe(200);
    expect(served.headers.get('content-type')).toMatch(/^application\/json/);
    expect(document.openapi).toMatch(/^3\.\d+\.\d+$/);
    expect(document.info).toMatchObject({ title: 'Fault-tolerant AI assistant', version: '0.1.0' });
  });

  it.each(CONTRACT_ROUTES)('lists %s %s with the status codes the contract promises', (method, path, statuses) => {
    expect(Object.keys(operation(method, path).responses).sort()).toEqual(statuses);
  });

  it('documents the two ways to send an API key, and that the answer route takes either', () => {
    expect(document.components.securitySchemes).toMatchObject({
      bearer: { type: 'http', scheme: 'bearer' },
      'x-api-key': { type: 'apiKey', in: 'header', name: 'x-api-key' },
    });
    expect(operation('post', '/assistant/query').security).toEqual(expect.arrayContaining([{ bearer: [] }, { 'x-api-key': [] }]));
  });

  it('documents the Retry-After header of the 503 as an integer of seconds', () => {
    expect(operation('post', '/assistant/query').responses['503']?.headers?.['Retry-After']?.schema).toMatchObject({
      type: 'integer',
      minimum: 1,
    });
  });

  it('documents the 429 with Retry-After, and the RateLimit headers on the 200 and the 429; a real 429 fits the document', async () => {
    const responses = operation('post', '/assistant/query').responses;
    expect(responses['429']?.headers?.['Retry-After']?.schema).toMatchObject({ type: 'integer', minimum: 1 });
    for (const status of ['200', '429'])
      expect(Object.keys(responses[status]?.headers ?? {})).toEqual(expect.arrayContaining(['RateLimit', 'RateLimit-Policy']));

    const limited = await startTestApp({ HF_ENDPOINT_URL: upstream.url, RATE_LIMIT_PER_MINUTE: '1' });
    try {
      const [admitted, refused] = [
        await ask(limited.url, { query: 'What does half-open mean?' }),
        await ask(limited.url, { query: 'What does half-open mean?' }),
      ];
      expect([admitted.status, refused.status]).toEqual([200, 429]);
      expectDocumented('post', '/assistant/query', admitted);
      expectDocumented('post', '/assistant/query', refused);
    } finally {
      await limited.close();
    }
  });

  it('describes the request body: query a required string, topK an integer 1..20 defaulting to 3', () => {
    const body = resolve(operation('post', '/assistant/query').requestBody?.content['application/json']?.schema);
    expect(body.required).toEqual(['query']);
    expect(body.properties?.['query']).toMatchObject({ type: 'string', minLength: 1 });
    expect(body.properties?.['topK']).toMatchObject({ type: 'integer', minimum: 1, maximum: 20, default: 3 });
  });

  it('has every field of the contract in the answer schema, with its enums, and cachedAt / retryAfterSeconds optional', () => {
    const answer = responseSchema('post', '/assistant/query', '200');
    const properties = answer.properties ?? {};

    expect(Object.keys(properties).sort()).toEqual([...ANSWER_FIELDS].sort());
    expect([...(answer.required ?? [])].sort()).toEqual(ANSWER_FIELDS.filter((field) => !OPTIONAL_ANSWER_FIELDS.includes(field)).sort());
    expect(properties['source']?.enum).toEqual(['llm', 'cache', 'excerpts']);
    expect(properties['fallbackReason']).toMatchObject({
      nullable: true,
      enum: ['circuit_open', 'upstream_error', 'timeout', 'rate_limited', 'overloaded', 'upstream_unconfigured', 'interrupted', null],
    });
    expect(properties['degraded']?.type).toBe('boolean');
    expect(properties['cachedAt']).toMatchObject({ type: 'string', format: 'date-time' });
    expect(properties['retryAfterSeconds']).toMatchObject({ type: 'integer' });
    expect(properties['coalesced']).toMatchObject({ type: 'boolean', enum: [true] });
    const excerpt = resolve(properties['excerpts']?.items);
    expect(Object.keys(excerpt.properties ?? {}).sort()).toEqual(['documentId', 'score', 'text', 'title']);
    const circuit = resolve(properties['circuit']);
    expect(circuit.properties?.['state']?.enum).toEqual(['closed', 'open', 'half_open']);
    expect(Object.keys(circuit.properties ?? {}).sort()).toEqual(['name', 'state']);
  });

  it('has every field of the contract in the 503 body', () => {
    const unavailable = responseSchema('post', '/assistant/query', '503');

    expect(Object.keys(unavailable.properties ?? {}).sort()).toEqual([...UNAVAILABLE_FIELDS].sort());
    expect([...(unavailable.required ?? [])].sort()).toEqual([...UNAVAILABLE_FIELDS].sort());
  });

  it("has the assistant object of the contract on a completion, and OpenAI's error shape on every /v1 error", () => {
    const completion = responseSchema('post', '/v1/chat/completions', '200');
    expect(completion.required).toEqual(expect.arrayContaining(['id', 'object', 'created', 'model', 'choices', 'assistant']));
    const assistant = resolve(completion.properties?.['assistant']);
    // The contract's assistant object has no `coalesced`: a coalesced completion is the leader's, as it is.
    expect(Object.keys(assistant.properties ?? {}).sort()).toEqual(
      ANSWER_FIELDS.filter((field) => field !== 'answer' && field !== 'coalesced').sort(),
    );
    for (const [method, path, statuses] of CONTRACT_ROUTES.filter(([, path]) => path.startsWith('/v1/'))) {
      for (const status of statuses.filter((status) => status !== '200')) {
        const error = resolve(responseSchema(method, path, status).properties?.['error']);
        expect({ status, fields: Object.keys(error.properties ?? {}).sort() }).toEqual({
          status,
          fields: ['code', 'message', 'param', 'type'],
        });
      }
    }
    expect(operation('post', '/v1/chat/completions').responses['503']?.headers?.['Retry-After']?.schema).toMatchObject({ type: 'integer' });
    const body = resolve(operation('post', '/v1/chat/completions').requestBody?.content['application/json']?.schema);
    expect(body.required).toEqual(['messages']);
  });

  it('describes what /v1 really sends: a completion fresh and cached, the 400, the model list, and the 401 and 429', async () => {
    const question = { messages: [{ role: 'user', content: 'Which variables configure the model?' }] };
    const [fresh, cached] = [await complete(testApp.url, question), await complete(testApp.url, question)];
    const refused = await complete(testApp.url, { messages: [] });
    const models = await listModels(testApp.url);
    expect([fresh.status, cached.status, refused.status, models.status]).toEqual([200, 200, 400, 200]);
    expect(cached.body).toMatchObject({ assistant: { source: 'cache' } });
    for (const result of [fresh, cached, refused]) expectDocumented('post', '/v1/chat/completions', result);
    expectDocumented('get', '/v1/models', models);

    const guarded = await startTestApp({
      HF_ENDPOINT_URL: upstream.url,
      ASSISTANT_API_KEYS: 'key-one-0123456789',
      RATE_LIMIT_PER_MINUTE: '1',
    });
    try {
      const key = { authorization: 'Bearer key-one-0123456789' };
      const results = [
        await complete(guarded.url, question, key),
        await complete(guarded.url, question, key),
        await complete(guarded.url, question),
      ];
      expect(results.map((result) => result.status)).toEqual([200, 429, 401]);
      for (const result of results) expectDocumented('post', '/v1/chat/completions', result);
      expectDocumented('get', '/v1/models', await listModels(guarded.url));
    } finally {
      await guarded.close();
    }
  });

  it("describes what the app really sends: answers healthy and degraded, the 503, 4xx bodies and Terminus' bodies", async () => {
    expectDocumented('post', '/assistant/query', await ask(testApp.url, { query: 'What does half-open mean?' }));
    expectDocumented('post', '/assistant/query', await ask(testApp.url, { query: 'What does half-open mean?' }));
    expectDocumented('post', '/assistant/query', await ask(testApp.url, { query: '' }));
    expectDocumented('post', '/assistant/query', await ask(testApp.url, { query: 'x'.repeat(100 * 1024) }));
    expectDocumented('post', '/assistant/query', await postRaw(testApp.url, 'query=x', 'text/plain'));
    for (const path of ['', '/live', '/ready', '/circuit-breaker'] as const)
      expectDocumented('get', `/health${path}`, await getHealth(testApp.url, path));
    upstream.setFault({ kind: 'error500' });
    const failures = [];
    for (const query of ['zqxj vvkw', 'qzjx wvkv', 'xjqz kvvw']) failures.push(await ask(testApp.url, { query }));
    const degraded = await ask(testApp.url, { query: 'How does the answer cache work?' });
    const circuitOpen = await getHealth(testApp.url, '/circuit-breaker');

    expect(failures.map((result) => result.status)).toEqual([503, 503, 503]);
    for (const result of failures) expectDocumented('post', '/assistant/query', result);
    expect(degraded.body).toMatchObject({ degraded: true, fallbackReason: 'circuit_open' });
    expectDocumented('post', '/assistant/query', degraded);
    expect(circuitOpen.status).toBe(503);
    expectDocumented('get', '/health/circuit-breaker', circuitOpen);
    const degradedCompletion = await complete(testApp.url, { messages: [{ role: 'user', content: 'How does the answer cache work?' }] });
    const unavailableCompletion = await complete(testApp.url, { messages: [{ role: 'user', content: 'zqxj vvkw' }] });
    expect(degradedCompletion.body).toMatchObject({ assistant: { degraded: true } });
    expect(unavailableCompletion.status).toBe(503);
    expectDocumented('post', '/v1/chat/completions', degradedCompletion);
    expectDocumented('post', '/v1/chat/completions', unavailableCompletion);
  });
});

describe('GET /docs', () => {
  it('serves the Swagger UI as HTML, and its scripts and styles load', async () => {
    const page = await fetch(`${testApp.url}/docs`);
    const html = await page.text();

    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(html).toContain('<div id="swagger-ui">');
    const assets = [...html.matchAll(/(?:src|href)="([^"]+\.(?:js|css))"/g)].map(
      (match) => new URL(match[1] ?? '', `${testApp.url}/docs`).pathname,
    );
    expect(assets).toEqual(expect.arrayContaining(['/docs/swagger-ui-bundle.js', '/docs/swagger-ui-init.js', '/docs/swagger-ui.css']));
    for (const asset of assets) {
      const response = await fetch(`${testApp.url}${asset}`);
      await response.arrayBuffer();
      expect({ asset, status: response.status }).toEqual({ asset, status: 200 });
    }
    const init = await (await fetch(`${testApp.url}/docs/swagger-ui-init.js`)).text();
    expect(init).toContain('/assistant/query');
  });

  it.each([
    'package.json',
    'swagger-ui-bundle.js.map',
    'swagger-ui.css.map',
    'swagger-initializer.js',
    'oauth2-redirect.html',
    'oauth2-redirect.js',
    'index.css',
    'swagger-ui.js',
    'swagger-ui-es-bundle.js',
    'absolute-path.js',
    'README.md',
    'LICENSE',
    'NOTICE',
    '%70ackage.json',
    'swagger-ui-bundle.js.LICENSE.txt',
  ])('serves nothing of swagger-ui-dist the page does not load: /docs/%s is a 404', async (file) => {
    const response = await fetch(`${testApp.url}/docs/${file}`);
    await response.arrayBuffer();
    expect(response.status).toBe(404);
  });
});

describe('with DOCS_ENABLED=false (the default with NODE_ENV=production)', () => {
  let withoutDocs: TestApp;

  beforeAll(async () => {
    withoutDocs = await startTestApp({ HF_ENDPOINT_URL: upstream.url, DOCS_ENABLED: 'false' });
  });
  afterAll(async () => {
    await withoutDocs?.close();
  });

  it.each(['/docs', '/docs/', '/docs/json', '/docs/swagger-ui-init.js', '/docs/swagger-ui.css', '/docs/swagger-ui-bundle.js'])(
    'GET %s is a 404',
    async (path) => {
      const response = await fetch(`${withoutDocs.url}${path}`);
      await response.arrayBuffer();
      expect(response.status).toBe(404);
    },
  );

  it('still answers, in the documented shape (the routes’ serializers come from the document, served or not)', async () => {
    const answered = await ask(withoutDocs.url, { query: 'What does half-open mean?' });
    expect(answered.status).toBe(200);
    expectDocumented('post', '/assistant/query', answered);
  });
});
