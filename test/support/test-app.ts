import type { ConfigType } from '@nestjs/config';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { PinoLogger } from 'nestjs-pino';
import { AppModule } from '../../src/app.module.js';
import { APP_OPTIONS, configureApp, createHttpAdapter } from '../../src/app.setup.js';
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
  CACHE_TTL_SECONDS: '3600',
  CACHE_STALE_TTL_SECONDS: '86400',
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
