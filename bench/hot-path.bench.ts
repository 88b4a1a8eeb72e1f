import 'reflect-metadata';
import { InferenceClient } from '@huggingface/inference';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import fastJsonStringify, { type Schema } from 'fast-json-stringify';
import { Agent, fetch as undiciFetch } from 'undici';
import { AppModule } from '../src/app.module.js';
import { AssistantService } from '../src/assistant/assistant.service.js';
import { HfTextGenClient } from '../src/hf-textgen/hf-textgen.client.js';
import { documentedOkSchema } from '../src/openapi/documented-response.serializers.js';
import { FakeHfUpstream } from '../test/support/fake-hf-upstream.js';
import { fixed, markdownTable, median } from './stats.js';

// Two costs looked at on Node 24, each measured against its alternatives in one run: the HTTP client of the model
// path (the global fetch the app uses against a dedicated undici Agent) and
// the serialisation of an answer (JSON.stringify before, Fastify's schema-based serializer compiled from the
// OpenAPI document after).

const MODEL_CALLS = 2000;
const MODEL_CONCURRENCY = 50;
const MODEL_ROUNDS = 9;
const SERIALISATIONS = 20_000;
const SERIALISE_ROUNDS = 7;

export interface HotPathRow {
  name: string;
  /** µs per model call, or ns per serialisation. */
  cost: number;
  ratioToBefore: number;
  /** Model calls: TCP connections the upstream accepted per 1000 calls. */
  connectionsPer1000?: number;
}

export interface HotPathBenchResult {
  modelCall: HotPathRow[];
  serialisation: HotPathRow[];
  answerBytes: number;
  serialisedIdentically: boolean;
}

const MESSAGES = [
  { role: 'system', content: 'Answer from the excerpts.' },
  { role: 'user', content: 'What does half-open mean?' },
];

async function perCallUs(call: () => Promise<unknown>): Promise<number> {
  let started = 0;
  const begin = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: MODEL_CONCURRENCY }, async () => {
      while (started++ < MODEL_CALLS) await call();
    }),
  );
  return Number(process.hrtime.bigint() - begin) / 1000 / MODEL_CALLS;
}

async function interleaved(variants: Record<string, () => Promise<number>>, rounds: number): Promise<Record<string, number>> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
  for (const measure of Object.values(variants)) await measure(); // warm-up
  for (let round = 0; round < rounds; round++) for (const [name, measure] of Object.entries(variants)) samples[name]?.push(await measure());
  return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, median(values)]));
}

function rows(costs: Record<string, number>): HotPathRow[] {
  const before = Object.values(costs)[0] ?? NaN;
  return Object.entries(costs).map(([name, cost]) => ({ name, cost, ratioToBefore: cost / before }));
}

async function measureModelCall(upstream: FakeHfUpstream): Promise<HotPathRow[]> {
  const client = new InferenceClient(undefined, { endpointUrl: upstream.url });
  const service = new HfTextGenClient({ token: undefined, endpointUrl: upstream.url, model: 'bench', maxNewTokens: 64, temperature: 0.2 });
  const agent = new Agent();
  const seen = new Map<string, { calls: number; connections: number }>();
  /** Counts the connections the upstream accepted while `name` was measured. */
  const counted = (name: string, measure: () => Promise<number>) => async () => {
    const before = upstream.connections;
    const cost = await measure();
    const total = seen.get(name) ?? { calls: 0, connections: 0 };
    seen.set(name, { calls: total.calls + MODEL_CALLS, connections: total.connections + upstream.connections - before });
    return cost;
  };
  const viaClient = (fetchImpl: typeof fetch) => () =>
    perCallUs(() => client.chatCompletion({ model: 'bench', messages: MESSAGES }, { retry_on_error: false, fetch: fetchImpl }));
  const variants = {
    'HfTextGenClient.generate (the global fetch: the app as it is)': () =>
      perCallUs(() => service.generate({ system: 'Answer from the excerpts.', user: 'What does half-open mean?' })),
    'the client over the global fetch': viaClient((input, init) => fetch(input, init)),
    'the client over a dedicated undici Agent (keep-alive pool of our own)': viaClient(
      async (input, init) =>
        await undiciFetch(input as Parameters<typeof undiciFetch>[0], {
          ...(init as Parameters<typeof undiciFetch>[1]),
          dispatcher: agent,
        }),
    ),
  };
  try {
    const costs = await interleaved(
      Object.fromEntries(Object.entries(variants).map(([name, measure]) => [name, counted(name, measure)])),
      MODEL_ROUNDS,
    );
    return rows(costs).map((row) => {
      const total = seen.get(row.name);
      return { ...row, connectionsPer1000: total ? (1000 * total.connections) / total.calls : NaN };
    });
  } finally {
    await agent.destroy();
  }
}

async function measureSerialisation(): Promise<Pick<HotPathBenchResult, 'serialisation' | 'answerBytes' | 'serialisedIdentically'>> {
  process.env['HF_TOKEN'] = '';
  process.env['HF_ENDPOINT_URL'] = '';
  process.env['REDIS_URL'] = '';
  process.env['LOG_LEVEL'] = 'silent';
  const app = await NestFactory.create<NestFastifyApplication>(AppModule, new FastifyAdapter(), { logger: false });
  try {
    await app.init();
    const document = SwaggerModule.createDocument(app, new DocumentBuilder().build());
    const schema = documentedOkSchema(document, '/assistant/query', 'POST');
    if (!schema) throw new Error('POST /assistant/query has no documented 200 body');
    const serialise = fastJsonStringify(schema as unknown as Schema);
    // A real answer: the excerpts fallback (no model configured), three excerpts of the shipped corpus.
    const answer = await app.get(AssistantService).answer({ query: 'What does the half-open state mean?', topK: 3 });
    const perCallNs = (write: (value: unknown) => string) => async () => {
      const begin = process.hrtime.bigint();
      for (let i = 0; i < SERIALISATIONS; i++) write(answer);
      return Number(process.hrtime.bigint() - begin) / SERIALISATIONS;
    };
    const costs = await interleaved(
      {
        'before: JSON.stringify': perCallNs(JSON.stringify),
        'after: schema-based serializer (fast-json-stringify)': perCallNs(serialise),
      },
      SERIALISE_ROUNDS,
    );
    const json = JSON.stringify(answer);
    return { serialisation: rows(costs), answerBytes: Buffer.byteLength(json), serialisedIdentically: serialise(answer) === json };
  } finally {
    await app.close();
  }
}

export async function runHotPathBench(): Promise<HotPathBenchResult> {
  const upstream = await FakeHfUpstream.start();
  try {
    return { modelCall: await measureModelCall(upstream), ...(await measureSerialisation()) };
  } finally {
    await upstream.close();
  }
}

export function hotPathTables(result: HotPathBenchResult): string {
  const model = markdownTable(
    [
      `model call, ${MODEL_CONCURRENCY} at once against the fake upstream (median of ${MODEL_ROUNDS} rounds × ${MODEL_CALLS})`,
      'µs per call',
      '× the app',
      'connections per 1000 calls',
    ],
    result.modelCall.map((row) => [row.name, fixed(row.cost, 0), fixed(row.ratioToBefore), fixed(row.connectionsPer1000 ?? NaN, 1)]),
  );
  const serialisation = markdownTable(
    [
      `serialising an answer (${result.answerBytes} bytes, median of ${SERIALISE_ROUNDS} rounds × ${SERIALISATIONS})`,
      'ns per answer',
      '× before',
    ],
    result.serialisation.map((row) => [row.name, fixed(row.cost, 0), fixed(row.ratioToBefore)]),
  );
  return `${model}\n\n${serialisation}\n\nThe schema-based serializer writes the same bytes as JSON.stringify: ${result.serialisedIdentically ? 'yes' : 'NO'}.`;
}
