// The answer cache on a real redis-server shared by replicas: sharing, health, outages, reconnection, stale-while-open.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { killAppProcesses, startAppProcess } from './support/app-process.js';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import { eventually, withinMs } from './support/http.js';
import { type CapturedOutput, captureOutput, linesContaining } from './support/log-lines.js';
import { RedisTestServer } from './support/redis-server.js';
import { startTestApp, type TestApp } from './support/test-app.js';
import { CACHE_MANAGER, type Cache } from '@nestjs/cache-manager';
import { AnswerCache } from '../src/cache/answer-cache.js';
import { PROMPT_VERSION } from '../src/assistant/prompt.builder.js';
import { DEFAULT_TOP_K } from '../src/assistant/query.dto.js';
import { ModelTargets } from '../src/hf-textgen/model-targets.js';
import { KnowledgeBase } from '../src/knowledge/knowledge-base.js';

interface Reply {
  status: number;
  body: Record<string, unknown>;
  /** Wall-clock time from request to full body. */
  ms: number;
}

const HTTP_TIMEOUT_MS = 5000;
/** node-redis backs off up to 2 s between attempts; a reconnect shows within a few of them. */
const RECONNECT_DEADLINE_MS = 10_000;

let redis: RedisTestServer;
let redisRunning = false;
let upstream: FakeHfUpstream;
const replicas: TestApp[] = [];
let output: CapturedOutput | undefined;
/** What the apps in this process wrote to stdout and stderr during the current test. */
const written = (): string => output?.text() ?? '';
let nextQuestion = 0;

beforeAll(async () => {
  [redis, upstream] = await Promise.all([RedisTestServer.start(), FakeHfUpstream.start()]);
  redisRunning = true;
  output = captureOutput();
});

beforeEach(async () => {
  upstream.reset();
  if (!redisRunning) await startRedis();
  // The fleet's circuit lives in Redis: one test's outage (a circuit left open) is not the next one's.
  await redis.flushAll();
  output?.clear();
});

afterEach(async () => {
  // An app closed while Redis is down never finishes closing (see "shutting down while Redis is down"),
  // so Redis comes back and every replica reconnects before the replicas close.
  if (!redisRunning) await startRedis();
  await Promise.all(replicas.map((replica) => eventually(() => get(replica.url, '/health'), cacheIsUp, RECONNECT_DEADLINE_MS)));
  await Promise.all(replicas.splice(0).map((replica) => replica.close()));
});

afterAll(async () => {
  await Promise.all(replicas.splice(0).map((replica) => replica.close()));
  await killAppProcesses();
  await redis.stop();
  await upstream.close();
  output?.restore();
});

/** Another replica of the service, in this process, on the shared Redis. */
async function startReplica(env: Record<string, string> = {}): Promise<TestApp> {
  // The level an operator runs at: Redis' outage is a warning, its return an info line.
  const replica = await startTestApp({ REDIS_URL: redis.url, HF_ENDPOINT_URL: upstream.url, LOG_LEVEL: 'info', ...env });
  replicas.push(replica);
  return replica;
}

async function killRedis(): Promise<void> {
  await redis.kill();
  redisRunning = false;
}

async function startRedis(): Promise<void> {
  await redis.restart();
  redisRunning = true;
}

/** A question from the knowledge base's topics that no earlier test asked, so its first answer is not cached. */
function newQuestion(): string {
  nextQuestion += 1;
  return `what does half-open mean for the cache (question ${nextQuestion})`;
}

async function ask(url: string, query: string): Promise<Reply> {
  const started = performance.now();
  const response = await fetch(`${url}/assistant/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query }),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  return read(response, started);
}

async function get(url: string, path: string): Promise<Reply> {
  const started = performance.now();
  return read(await fetch(`${url}${path}`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) }), started);
}

async function read(response: Response, started: number): Promise<Reply> {
  const body = (await response.json()) as Record<string, unknown>;
  return { status: response.status, body, ms: performance.now() - started };
}

/** Calls `probe` until `done` holds for its result; fails with the last result after `timeoutMs`. */

function cacheHealth(reply: Reply): unknown {
  return (reply.body['details'] as Record<string, unknown> | undefined)?.['cache'];
}

/** The cache entry alone: the whole of /health is also 503 while the circuit is open. */
const cacheIsUp = (reply: Reply): boolean => (cacheHealth(reply) as { status?: string } | undefined)?.status === 'up';

describe('answers cached in Redis', () => {
  it('are served by another replica from the cache, with no model call', async () => {
    const [first, second] = [await startReplica(), await startReplica()];
    const question = newQuestion();

    const fromModel = await ask(first.url, question);
    const fromOtherReplica = await ask(second.url, question);

    expect(fromModel.body).toMatchObject({ source: 'llm', degraded: false });
    expect(fromOtherReplica.status).toBe(200);
    expect(fromOtherReplica.body).toMatchObject({
      source: 'cache',
      degraded: false,
      fallbackReason: null,
      answer: fromModel.body['answer'],
    });
    expect(fromOtherReplica.body['cachedAt']).toEqual(expect.any(String));
    expect(upstream.calls).toBe(1);
  });
});

describe('entries in Redis that the app did not write', () => {
  /** The key the app files `question` under, as its AnswerCache computes it. */
  function keyOf(replica: TestApp, question: string): string {
    return replica.app.get(AnswerCache).keyFor({
      query: question,
      topK: DEFAULT_TOP_K,
      ...replica.app.get(ModelTargets).generationParameters,
      corpusVersion: replica.app.get(KnowledgeBase).version,
      promptVersion: PROMPT_VERSION,
    });
  }

  it.each<[string, Record<string, unknown>]>([
    ['dated a thousand years ahead (createdAt: 1e20)', { answer: 'planted', excerpts: [], createdAt: 1e20 }],
    ['without the shape of an answer', { answer: ['planted'], excerpts: 'none', createdAt: 'yesterday' }],
  ])('are a miss when %s: the model answers (never a 500) and its answer replaces the entry', async (_case, planted) => {
    const replica = await startReplica();
    const question = newQuestion();
    const key = keyOf(replica, question);
    await replica.app.get<Cache>(CACHE_MANAGER).set(key, planted, 60_000);

    const reply = await ask(replica.url, question);

    expect(reply.status).toBe(200);
    expect(reply.body).toMatchObject({ source: 'llm', degraded: false });
    expect(await replica.app.get<Cache>(CACHE_MANAGER).get(key)).toMatchObject({ answer: reply.body['answer'] });
    expect(upstream.calls).toBe(1);
  });
});

describe('health with Redis', () => {
  it('reports the Redis store up, then down (503) when Redis dies, while readiness and liveness stay 200', async () => {
    const replica = await startReplica();

    const healthy = await get(replica.url, '/health');
    expect(healthy.status).toBe(200);
    expect(cacheHealth(healthy)).toEqual({ store: 'redis', status: 'up' });

    await killRedis();
    const unhealthy = await eventually(
      () => get(replica.url, '/health'),
      (reply) => reply.status === 503,
      RECONNECT_DEADLINE_MS,
    );
    expect(cacheHealth(unhealthy)).toMatchObject({ store: 'redis', status: 'down' });
    expect((await get(replica.url, '/health/ready')).status).toBe(200);
    expect((await get(replica.url, '/health/live')).status).toBe(200);
  });
});

describe('a Redis that stops answering with its connection open', () => {
  it('is noticed: /health shows the cache down, requests are answered without waiting on it, and it comes back', async () => {
    const replica = await startReplica();
    await ask(replica.url, newQuestion());
    redis.pause();
    try {
      const down = await eventually(
        () => get(replica.url, '/health'),
        (reply) => !cacheIsUp(reply),
        RECONNECT_DEADLINE_MS,
      );
      expect(cacheHealth(down)).toMatchObject({ status: 'down', store: 'redis', message: expect.stringContaining('does not answer') });
      for (let i = 0; i < 5; i++) {
        const reply = await ask(replica.url, newQuestion());
        expect(reply.status).toBe(200);
        // never queued behind a Redis that will not answer (HTTP_TIMEOUT_MS would cut a request that waited)
        expect(reply.ms).toBeLessThan(2000);
      }
      expect((await fetch(`${replica.url}/health/ready`)).status).toBe(200);
    } finally {
      redis.resume();
    }
    await eventually(() => get(replica.url, '/health'), cacheIsUp, RECONNECT_DEADLINE_MS);
    expect(linesContaining(written(), 'Redis does not answer')).toHaveLength(1);
    expect(linesContaining(written(), 'Redis answers again')).toHaveLength(1);
  });
});

describe('Redis dying mid-run', () => {
  it('costs no request its 200 or more than about a second, and is logged once, not once per request', async () => {
    const replica = await startReplica();
    const questions = [newQuestion(), newQuestion(), newQuestion()];
    const before: Reply[] = [];
    for (const question of questions) before.push(await ask(replica.url, question));
    const normalMs = Math.max(...before.map((reply) => reply.ms));

    await killRedis();
    const during: Reply[] = [];
    // Questions asked before (their cache entries unreachable now) and new ones: the model answers all.
    for (const question of [...questions, newQuestion(), newQuestion()]) during.push(await ask(replica.url, question));
    upstream.setFault({ kind: 'error500' });
    // With the model failing too, the excerpts answer, before and after the circuit opens (threshold 3).
    for (let i = 0; i < 5; i += 1) during.push(await ask(replica.url, newQuestion()));

    expect(before.map((reply) => reply.body['source'])).toEqual(['llm', 'llm', 'llm']);
    expect(during.map((reply) => reply.status)).toEqual(Array(10).fill(200));
    expect(during.map((reply) => reply.body['source'])).toEqual([...Array(5).fill('llm'), ...Array(5).fill('excerpts')]);
    for (const reply of during) expect(reply.ms).toBeLessThan(normalMs + 1000);
    expect(linesContaining(written(), 'Redis unavailable')).toHaveLength(1);
  });
});

describe('Redis restarted on the same port', () => {
  it('is reconnected by itself: the cache is up again, answers are shared through Redis, and the return is logged', async () => {
    const replica = await startReplica();
    await killRedis();
    await eventually(
      () => get(replica.url, '/health'),
      (reply) => reply.status === 503,
      RECONNECT_DEADLINE_MS,
    );
    const duringOutage = await ask(replica.url, newQuestion());

    await startRedis();
    const healthy = await eventually(() => get(replica.url, '/health'), cacheIsUp, RECONNECT_DEADLINE_MS);
    const question = newQuestion();
    const fromModel = await ask(replica.url, question);
    const other = await startReplica();
    const fromOtherReplica = await ask(other.url, question);

    expect(duringOutage.status).toBe(200);
    expect(cacheHealth(healthy)).toEqual({ store: 'redis', status: 'up' });
    expect(fromModel.body).toMatchObject({ source: 'llm' });
    expect(fromOtherReplica.body).toMatchObject({ source: 'cache', degraded: false, answer: fromModel.body['answer'] });
    expect(upstream.calls).toBe(2);
    expect(linesContaining(written(), 'Redis unavailable')).toHaveLength(1);
    expect(linesContaining(written(), 'Redis is back')).toHaveLength(1);
  });
});

describe('an app started while Redis is down', () => {
  it('starts within a few seconds, serves 200s, and picks Redis up when it comes', async () => {
    await killRedis();
    const started = Date.now();
    const app = await startAppProcess({ REDIS_URL: redis.url, HF_ENDPOINT_URL: upstream.url, SHUTDOWN_DRAIN_SECONDS: '0' });
    const startupMs = Date.now() - started;

    const withoutRedis = await ask(app.url, newQuestion());
    const unhealthy = await get(app.url, '/health');
    await startRedis();
    await eventually(() => get(app.url, '/health'), cacheIsUp, RECONNECT_DEADLINE_MS);
    const question = newQuestion();
    const fromModel = await ask(app.url, question);
    const other = await startReplica();
    const fromOtherReplica = await ask(other.url, question);
    await app.kill('SIGTERM');

    expect(startupMs).toBeLessThan(8000);
    expect(withoutRedis.status).toBe(200);
    expect(withoutRedis.body).toMatchObject({ source: 'llm' });
    expect(unhealthy.status).toBe(503);
    expect(cacheHealth(unhealthy)).toMatchObject({ store: 'redis', status: 'down' });
    expect(fromModel.body).toMatchObject({ source: 'llm' });
    expect(fromOtherReplica.body).toMatchObject({ source: 'cache', answer: fromModel.body['answer'] });
    expect(await app.exited).toEqual({ code: 0, signal: null });
    expect(linesContaining(app.output(), 'Redis unavailable')).toHaveLength(1);
    expect(linesContaining(app.output(), 'Redis is back')).toHaveLength(1);
  });
});

describe('stale-while-open with Redis', () => {
  it('serves an answer older than CACHE_TTL_SECONDS as a degraded cache answer while the circuit is open', async () => {
    const replica = await startReplica({ CACHE_TTL_SECONDS: '1', CIRCUIT_BREAKER_RESET_TIMEOUT: '30' });
    const question = newQuestion();
    const fromModel = await ask(replica.url, question);
    upstream.setFault({ kind: 'error500' });
    const failures: Reply[] = [];
    for (let i = 0; i < 3; i += 1) failures.push(await ask(replica.url, newQuestion()));
    const callsBefore = upstream.calls;

    await sleep(1100);
    const stale = await ask(replica.url, question);

    expect(fromModel.body).toMatchObject({ source: 'llm' });
    expect(failures.at(-1)?.body['circuit']).toMatchObject({ state: 'open' });
    expect(stale.status).toBe(200);
    expect(stale.body).toMatchObject({
      source: 'cache',
      degraded: true,
      fallbackReason: 'circuit_open',
      answer: fromModel.body['answer'],
      cachedAt: expect.any(String),
      retryAfterSeconds: expect.any(Number),
    });
    expect(upstream.calls).toBe(callsBefore);
  });
});

describe('shutting down while Redis is down', () => {
  it('completes on SIGTERM (the app logs "Stopped") and exits 0', async () => {
    const app = await startAppProcess({ REDIS_URL: redis.url, HF_ENDPOINT_URL: upstream.url, SHUTDOWN_DRAIN_SECONDS: '0' });
    await killRedis();
    await eventually(
      () => get(app.url, '/health'),
      (reply) => !cacheIsUp(reply),
      RECONNECT_DEADLINE_MS,
    );

    app.process.kill('SIGTERM');
    const exit = await withinMs(app.exited, 10_000, 'exit after SIGTERM');

    expect(exit).toEqual({ code: 0, signal: null });
    // Without this line the process only ended because its event loop ran dry with app.close() still pending.
    expect(linesContaining(app.output(), 'Stopped')).toHaveLength(1);
  });
});
