import type { ConfigType } from '@nestjs/config';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { expect } from '@jest/globals';
import { Test } from '@nestjs/testing';
import { PinoLogger } from 'nestjs-pino';
import { AppModule } from '../../src/app.module.js';
import { APP_OPTIONS, configureApp, createHttpAdapter } from '../../src/app.setup.js';
import type { FakeHfUpstream } from './fake-hf-upstream.js';
import { ask, type HttpResult, type UnavailableBody } from './http.js';
import { loggingConfig } from '../../src/config/logging.config.js';

export interface TestApp {
  app: NestFastifyApplication;
  /** http://127.0.0.1:PORT */
  url: string;
  close(): Promise<void>;
}

/** Env every suite starts from: no real HF, no Redis, the shipped corpus, short breaker timings. */
export const BASE_TEST_ENV: Readonly<Record<string, string>> = {
  NODE_ENV: 'test',
  HF_TOKEN: '',
  HF_ENDPOINT_URL: '',
  REDIS_URL: '',
  KNOWLEDGE_DIR: './data/knowledge',
  CIRCUIT_BREAKER_ENABLED: 'true',
  CIRCUIT_BREAKER_FAIL_THRESHOLD: '3',
  CIRCUIT_BREAKER_TIMEOUT_SECONDS: '0.5',
  CIRCUIT_BREAKER_RESET_TIMEOUT: '0.5',
  CIRCUIT_BREAKER_NAME: 'huggingface',
  CIRCUIT_BREAKER_SHARED: 'true',
  CACHE_TTL_SECONDS: '3600',
  CACHE_STALE_TTL_SECONDS: '86400',
  // One model target, no hedge, the whole default deadline, unless a suite configures failover.
  HF_FALLBACK_MODELS: '',
  HF_HEDGE_AFTER_SECONDS: '0',
  ASSISTANT_DEADLINE_SECONDS: '30',
  // Open access unless a suite asks otherwise (process.env outlives each app, so every suite starts from these).
  ASSISTANT_API_KEYS: '',
  ASSISTANT_ALLOW_ANONYMOUS: 'false',
  RATE_LIMIT_PER_MINUTE: '0',
  RATE_LIMIT_CONCURRENT: '0',
  TRUST_PROXY: 'false',
  METRICS_PORT: '',
  // /docs served, as in development (the default is off only with NODE_ENV=production).
  DOCS_ENABLED: 'true',
  // Quiet test output; a suite that reads the log asks for the level it needs.
  LOG_LEVEL: 'silent',
};

/**
 * The real app, built exactly as main.ts builds it (adapter, parsers, pipes), listening on a free loopback
 * port. Configuration comes from process.env, so `env` is applied before the module is compiled.
 */
export async function startTestApp(env: Record<string, string> = {}): Promise<TestApp> {
  Object.assign(process.env, BASE_TEST_ENV, env);
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  const app = configureApp(moduleRef.createNestApplication<NestFastifyApplication>(createHttpAdapter(), APP_OPTIONS));
  // nestjs-pino keeps one root logger per process, built with the first app's options: later apps set their own level on it.
  PinoLogger.root.level = app.get<ConfigType<typeof loggingConfig>>(loggingConfig.KEY).level;
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { app, url: `http://127.0.0.1:${port}`, close: () => app.close() };
}

/** Questions the shipped corpus (an operator's guide to this service) has excerpts for; distinct so none hits another's cache entry. */
export const KNOWN_QUESTIONS = [
  'What does half-open mean?',
  'How does the answer cache work?',
  'What does the Retry-After header say?',
  'Which variables configure the model?',
  'How do the readiness probes behave?',
  'What happens when the circuit opens?',
  'How are documents chunked into excerpts?',
  'What does a degraded answer look like?',
] as const;
/** Questions with no excerpt at all: with the model out, nothing is left to answer from. */
export const NONSENSE_QUESTIONS = ['zqxj vvkw', 'qzjx wvkv', 'xjqz kvvw', 'jxzq vwkv'] as const;
/** Consecutive failures that open the circuit in apps started with BASE_TEST_ENV. */
export const FAIL_THRESHOLD = Number(BASE_TEST_ENV['CIRCUIT_BREAKER_FAIL_THRESHOLD']);

/** FAIL_THRESHOLD failing questions in a row with nothing to fall back on: 503s, the last one's own answer reporting the circuit open. */
export async function openCircuit(url: string, upstream: FakeHfUpstream): Promise<void> {
  upstream.setFault({ kind: 'error500' });
  let last: HttpResult<UnavailableBody> | undefined;
  for (const query of NONSENSE_QUESTIONS.slice(0, FAIL_THRESHOLD)) last = await ask<UnavailableBody>(url, { query });
  expect(last?.status).toBe(503);
  expect(last?.body.circuit.state).toBe('open');
}
