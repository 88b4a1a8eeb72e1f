// Validates bodies against TGI's OpenAPI 3.0 spec (tgi-openapi.json, Apache-2.0) plus the HF router's own error shapes.
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type SchemaObject, type ValidateFunction } from 'ajv';
import ajvFormats from 'ajv-formats';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const SPEC_ID = 'https://huggingface.co/tgi/openapi.json';
const COMPONENT_REF = '#/components/schemas/';

export type RouterSchemaName = 'RouterModelError' | 'RouterPlainError';
export type StreamSchemaName = 'TgiChatStreamError';
/**
 * Any key of the spec's components.schemas ('ChatCompletion', 'ChatCompletionChunk', 'ErrorResponse', 'Info', ...),
 * a router shape or a stream shape the spec lacks.
 */
export type UpstreamSchemaName = RouterSchemaName | StreamSchemaName | (string & {});

/**
 * Shapes outside the spec: what the HF router (router.huggingface.co) sends before a request ever reaches TGI, and
 * the error event TGI's /v1/chat/completions writes into an HTTP 200 stream when generation fails mid-way
 * (router/src/infer/mod.rs, InferError::into_openai_event: always http_status_code 422).
 */
const EXTRA_SCHEMAS: Record<RouterSchemaName | StreamSchemaName, SchemaObject> = {
  // unknown / unsupported model: OpenAI-style nested error object
  RouterModelError: {
    type: 'object',
    required: ['error'],
    properties: {
      error: {
        type: 'object',
        required: ['message', 'type', 'code'],
        properties: {
          message: { type: 'string' },
          type: { type: 'string' },
          param: { type: 'string', nullable: true },
          code: { type: 'string' },
        },
      },
    },
  },
  // 401 / 402 / 403 from the Hub's auth and billing layer: just a message, unlike TGI's {error, error_type}
  RouterPlainError: {
    type: 'object',
    required: ['error'],
    properties: { error: { type: 'string' } },
  },
  TgiChatStreamError: {
    type: 'object',
    required: ['error'],
    properties: {
      error: {
        type: 'object',
        required: ['message', 'http_status_code'],
        properties: { message: { type: 'string' }, http_status_code: { type: 'integer', minimum: 100, maximum: 599 } },
      },
    },
  },
};

function isJsonObject(value: Json): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Turns OpenAPI 3.0 dialect into what ajv (draft-07) compiles: local refs, nullable without type, no discriminator. */
function toAjvDialect(node: Json): Json {
  if (Array.isArray(node)) return node.map(toAjvDialect);
  if (!isJsonObject(node)) return node;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(node)) {
    // discriminator is only a routing hint: oneOf already enforces it, and ajv's version rejects allOf branches
    if (key === 'discriminator') continue;
    if (key === '$ref' && typeof value === 'string' && value.startsWith(COMPONENT_REF)) {
      out[key] = `#/definitions/${value.slice(COMPONENT_REF.length)}`;
    } else {
      out[key] = key === 'properties' && isJsonObject(value) ? mapValues(value, toAjvDialect) : toAjvDialect(value);
    }
  }
  // ajv only understands nullable next to type; `{allOf: [$ref], nullable}` becomes an explicit union with null
  if (out['nullable'] === true && !('type' in out)) {
    const { nullable: _dropped, ...rest } = out;
    return { anyOf: [rest, { type: 'null' }] };
  }
  return out;
}

function mapValues(object: JsonObject, fn: (value: Json) => Json): JsonObject {
  return Object.fromEntries(Object.entries(object).map(([key, value]) => [key, fn(value)]));
}

function loadSpecSchemas(): JsonObject {
  const spec = JSON.parse(readFileSync(new URL('./tgi-openapi.json', import.meta.url), 'utf8')) as Json;
  const components = isJsonObject(spec) ? spec['components'] : null;
  const schemas = components && isJsonObject(components) ? components['schemas'] : null;
  if (!schemas || !isJsonObject(schemas)) throw new Error('tgi-openapi.json has no components.schemas');
  return mapValues(schemas, toAjvDialect);
}

function createAjv(): Ajv {
  // full strict mode: the only foreign keyword left after toAjvDialect is the OpenAPI annotation `example`
  const ajv = new Ajv({ allErrors: true });
  ajv.addVocabulary(['example']);
  ajvFormats.default(ajv, ['int32', 'int64', 'float', 'double']);
  ajv.addSchema({ $id: SPEC_ID, definitions: loadSpecSchemas() });
  for (const [name, schema] of Object.entries(EXTRA_SCHEMAS)) ajv.addSchema(schema, name);
  return ajv;
}

let ajvInstance: Ajv | undefined;
const validators = new Map<string, ValidateFunction>();

function validatorFor(name: UpstreamSchemaName): ValidateFunction {
  const cached = validators.get(name);
  if (cached) return cached;
  ajvInstance ??= createAjv();
  const key = name in EXTRA_SCHEMAS ? name : `${SPEC_ID}#/definitions/${name}`;
  const validate = ajvInstance.getSchema(key);
  if (!validate) throw new Error(`Unknown upstream schema '${name}'`);
  validators.set(name, validate);
  return validate;
}

/** Returns ajv's errors when `body` does not match the named schema, or null when it does. */
export function validateUpstreamBody(name: UpstreamSchemaName, body: unknown): ErrorObject[] | null {
  const validate = validatorFor(name);
  return validate(body) ? null : (validate.errors ?? []);
}

/** One readable line per error, for assertion messages. */
export function describeSchemaErrors(errors: ErrorObject[] | null): string {
  return (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? e.keyword}`).join('; ');
}

/**
 * The data of each event of a text/event-stream body, in order: `data:` lines joined by newlines as the SSE spec (and
 * the hf client's parser) does; comments, other fields and events without data are skipped.
 */
export function eventStreamData(text: string): string[] {
  const payloads: string[] = [];
  for (const event of text.split(/\r\n\r\n|\n\n|\r\r/)) {
    const data = event
      .split(/\r\n|\n|\r/)
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(line.startsWith('data: ') ? 6 : 5));
    if (data.length > 0) payloads.push(data.join('\n'));
  }
  return payloads;
}

/**
 * Checks a whole streamed body of /v1/chat/completions: every event is a ChatCompletionChunk or an error event
 * (TgiChatStreamError or the spec's ErrorResponse), and the last one, only that one, is `[DONE]`. One line per
 * problem, '' when the stream is valid.
 */
export function describeEventStreamErrors(text: string): string {
  const payloads = eventStreamData(text);
  const problems: string[] = [];
  if (payloads.at(-1) !== '[DONE]') problems.push('the stream does not end with [DONE]');
  payloads.forEach((data, i) => {
    if (data === '[DONE]') {
      if (i !== payloads.length - 1) problems.push(`event ${i}: [DONE] before the end`);
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(data) as unknown;
    } catch {
      return void problems.push(`event ${i}: not JSON: ${data.slice(0, 60)}`);
    }
    const isError = typeof body === 'object' && body !== null && 'error' in body;
    const errors = isError
      ? validateUpstreamBody('TgiChatStreamError', body) && validateUpstreamBody('ErrorResponse', body)
      : validateUpstreamBody('ChatCompletionChunk', body);
    if (errors) problems.push(`event ${i}: ${describeSchemaErrors(errors)}`);
  });
  return problems.join('; ');
}
