import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { ConfigModule } from '@nestjs/config';
import { Test, type TestingModule } from '@nestjs/testing';
import { FakeHfUpstream } from '../../test/support/fake-hf-upstream.js';
import { CircuitBreakerRegistry } from '../circuit-breaker/circuit-breaker.registry.js';
import { UpstreamUnavailableError } from './assistant.errors.js';
import { AssistantModule } from './assistant.module.js';
import { AssistantService } from './assistant.service.js';

// The whole chain with real parts: in-process cache, a knowledge base on disk, the breaker, the HF client over HTTP.
const KNOWN = 'How does the half-open trial work?';
const UNKNOWN = 'zyxwv qqqqq';

describe('AssistantService.answer', () => {
  let upstream: FakeHfUpstream;
  let knowledgeDir: string;
  let moduleRef: TestingModule;
  let assistant: AssistantService;
  let breakers: CircuitBreakerRegistry;

  beforeAll(async () => {
    upstream = await FakeHfUpstream.start();
    knowledgeDir = await mkdtemp(join(tmpdir(), 'assistant-kb-'));
    await writeFile(
      join(knowledgeDir, 'breaker.md'),
      '# Circuit breaker\n\n## Half-open\n\nAfter the reset time-out the breaker lets exactly one trial call through. ' +
        'If the trial succeeds the circuit closes; if it fails the circuit opens again.\n',
    );
  });
  afterAll(async () => {
    await upstream.close();
    await rm(knowledgeDir, { recursive: true, force: true });
  });

  async function start(env: Record<string, string> = {}): Promise<void> {
    Object.assign(process.env, {
      HF_ENDPOINT_URL: upstream.url,
      HF_TOKEN: '',
      KNOWLEDGE_DIR: knowledgeDir,
      CIRCUIT_BREAKER_FAIL_THRESHOLD: '3',
      CIRCUIT_BREAKER_TIMEOUT_SECONDS: '0.3',
      CIRCUIT_BREAKER_RESET_TIMEOUT: '30',
      CACHE_TTL_SECONDS: '60',
      CACHE_STALE_TTL_SECONDS: '3600',
      REDIS_URL: '',
      ASSISTANT_COALESCE: 'true',
      ...env,
    });
    moduleRef = await Test.createTestingModule({
      imports: [ConfigModule.forRoot({ isGlobal: true, ignoreEnvFile: true }), AssistantModule],
    }).compile();
    await moduleRef.init();
    assistant = moduleRef.get(AssistantService);
    breakers = moduleRef.get(CircuitBreakerRegistry);
  }

  beforeEach(() => upstream.reset());
  afterEach(async () => {
    jest.useRealTimers();
    await moduleRef?.close();
  });

  async function openCircuit(): Promise<void> {
    upstream.setFault({ kind: 'error500' });
    for (let i = 0; i < 3; i++) await assistant.answer({ query: `${UNKNOWN} ${i}` }).catch(() => undefined);
    expect(breakers.get('huggingface').state).toBe('open');
  }

  it("answers from the model with the top excerpts as context, and says it's healthy", async () => {
    await start();
    upstream.setFault({ kind: 'ok', answer: 'One trial call goes through [1].' });
    const answer = await assistant.answer({ query: KNOWN, topK: 2 });
    expect(answer).toMatchObject({ answer: 'One trial call goes through [1].', source: 'llm', degraded: false, fallbackReason: null });
    expect(answer.circuit).toEqual({ name: 'huggingface', state: 'closed' });
    expect(answer.excerpts.length).toBeGreaterThan(0);
    expect(answer.excerpts.length).toBeLessThanOrEqual(2);
    expect(answer).not.toHaveProperty('retryAfterSeconds');
    expect(JSON.stringify(upstream.lastRequest?.body)).toContain('exactly one trial call');
  });

  it('serves a fresh cached answer without calling the model, for the same question however it is spaced or cased', async () => {
    await start();
    await assistant.answer({ query: KNOWN });
    const calls = upstream.calls;
    const cached = await assistant.answer({ query: `  ${KNOWN.toUpperCase().replace(/ /g, '   ')}  ` });
    expect(cached).toMatchObject({ source: 'cache', degraded: false, fallbackReason: null });
    expect(Date.parse(cached.cachedAt ?? '')).not.toBeNaN();
    expect(upstream.calls).toBe(calls);
  });

  it('asks the model again when topK differs, since that changes the answer', async () => {
    await start();
    await assistant.answer({ query: KNOWN, topK: 1 });
    const calls = upstream.calls;
    expect((await assistant.answer({ query: KNOWN, topK: 2 })).source).toBe('llm');
    expect(upstream.calls).toBe(calls + 1);
  });

  it('serves a stale cached answer, marked degraded, when the model fails after the fresh TTL', async () => {
    jest.useFakeTimers({
      doNotFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'nextTick', 'queueMicrotask'],
    });
    await start();
    await assistant.answer({ query: KNOWN });
    jest.setSystemTime(Date.now() + 61_000);
    upstream.setFault({ kind: 'error500' });
    const answer = await assistant.answer({ query: KNOWN });
    expect(answer).toMatchObject({ source: 'cache', degraded: true, fallbackReason: 'upstream_error', retryAfterSeconds: 1 });
    expect(upstream.calls).toBe(2);
  });

  it('asks the model, not the stale cache, once the fresh TTL has passed and the model is well', async () => {
    jest.useFakeTimers({
      doNotFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'nextTick', 'queueMicrotask'],
    });
    await start();
    await assistant.answer({ query: KNOWN });
    jest.setSystemTime(Date.now() + 61_000);
    expect((await assistant.answer({ query: KNOWN })).source).toBe('llm');
  });

  it('forgets an answer older than the stale TTL', async () => {
    jest.useFakeTimers({
      doNotFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'nextTick', 'queueMicrotask'],
    });
    await start();
    await assistant.answer({ query: KNOWN });
    jest.setSystemTime(Date.now() + 3_601_000);
    upstream.setFault({ kind: 'error500' });
    expect((await assistant.answer({ query: KNOWN })).source).toBe('excerpts');
  });

  it('answers from the excerpts, marked degraded, when the model fails and nothing is cached', async () => {
    await start();
    upstream.setFault({ kind: 'error500' });
    const answer = await assistant.answer({ query: KNOWN });
    expect(answer).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'upstream_error', retryAfterSeconds: 1 });
    expect(answer.answer).toContain('exactly one trial call');
    expect(breakers.get('huggingface').snapshot().stats.fallbacks).toBe(1);
  });

  it("passes on a 429's Retry-After while the circuit is still closed", async () => {
    await start();
    upstream.setFault({ kind: 'rateLimited429', retryAfterSeconds: 9 });
    expect(await assistant.answer({ query: KNOWN })).toMatchObject({
      fallbackReason: 'rate_limited',
      retryAfterSeconds: 30,
      circuit: { state: 'open' },
    });
  });

  it('throws UpstreamUnavailableError with the reason and Retry-After when nothing is left to answer from', async () => {
    await start();
    upstream.setFault({ kind: 'error500' });
    const error = await assistant.answer({ query: UNKNOWN }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UpstreamUnavailableError);
    expect(error).toMatchObject({ reason: 'upstream_error', retryAfterSeconds: 1, circuit: { name: 'huggingface', state: 'closed' } });
  });

  it('fails fast with the circuit open: no model call, reason circuit_open, Retry-After up to the trial', async () => {
    await start();
    await openCircuit();
    const calls = upstream.calls;
    const answer = await assistant.answer({ query: KNOWN });
    expect(answer).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'circuit_open', circuit: { state: 'open' } });
    expect(answer.retryAfterSeconds).toBeGreaterThanOrEqual(29);
    expect(answer.retryAfterSeconds).toBeLessThanOrEqual(30);
    expect(upstream.calls).toBe(calls);
  });

  it('reports the trial time as Retry-After when the failure that opens the circuit is this one', async () => {
    await start();
    upstream.setFault({ kind: 'error500' });
    await assistant.answer({ query: `${UNKNOWN} 1` }).catch(() => undefined);
    await assistant.answer({ query: `${UNKNOWN} 2` }).catch(() => undefined);
    const answer = await assistant.answer({ query: KNOWN });
    expect(answer).toMatchObject({ fallbackReason: 'upstream_error', circuit: { state: 'open' } });
    expect(answer.retryAfterSeconds).toBe(30);
  });

  it('reports a time-out when the model does not answer within the limit', async () => {
    await start();
    upstream.setFault({ kind: 'hang' });
    const answer = await assistant.answer({ query: KNOWN });
    expect(answer).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'timeout' });
    await upstream.waitForInFlight(0);
  });

  it('falls back without tripping the breaker when the model rejects this particular request', async () => {
    await start();
    upstream.setFault({ kind: 'unprocessable' });
    for (let i = 0; i < 4; i++) {
      expect(await assistant.answer({ query: `${KNOWN} ${i}` })).toMatchObject({ source: 'excerpts', fallbackReason: 'upstream_error' });
    }
    expect(breakers.get('huggingface').state).toBe('closed');
  });

  it('says upstream_unconfigured, and calls nothing, with neither a token nor an endpoint', async () => {
    await start({ HF_ENDPOINT_URL: '' });
    const answer = await assistant.answer({ query: KNOWN });
    expect(answer).toMatchObject({ source: 'excerpts', degraded: true, fallbackReason: 'upstream_unconfigured', retryAfterSeconds: 30 });
    expect(upstream.calls).toBe(0);
    expect(breakers.get('huggingface').state).toBe('closed');
  });

  describe('coalescing identical questions (ASSISTANT_COALESCE)', () => {
    const three = (query: string, signals: Array<AbortSignal | undefined> = []) =>
      Promise.allSettled([0, 1, 2].map((i) => assistant.answer({ query }, signals[i])));

    it('answers three identical questions with one model call, and drops the flight once it is answered', async () => {
      await start();
      upstream.setFault({ kind: 'ok', latencyMs: 200, answer: 'Shared.' });
      const answers = await three(KNOWN);
      expect(answers.map((a) => a.status === 'fulfilled' && [a.value.answer, a.value.coalesced])).toEqual([
        ['Shared.', undefined],
        ['Shared.', true],
        ['Shared.', true],
      ]);
      expect(upstream.calls).toBe(1);
      expect(assistant.flightsInTheAir).toBe(0);
    });

    it("tells the listeners of each request, and counts each follower's fallback on the breaker", async () => {
      await start();
      const told: string[] = [];
      assistant.observe({
        answered: (answer) => told.push(`answered:${answer.source}`),
        unavailable: (reason) => told.push(`unavailable:${reason}`),
        firstToken: () => undefined,
        streamEnded: () => undefined,
        coalesced: (scope) => told.push(`coalesced:${scope}`),
        coalesceWaitTimedOut: () => told.push('timed out'),
      });
      upstream.setFault({ kind: 'error500', latencyMs: 200 });
      await three(KNOWN);
      expect(told).toEqual(['answered:excerpts', 'answered:excerpts', 'answered:excerpts']);
      expect(breakers.get('huggingface').snapshot().stats.fallbacks).toBe(3);
      told.length = 0;
      const unavailable = await three(UNKNOWN);
      expect(unavailable.every((a) => a.status === 'rejected' && a.reason instanceof UpstreamUnavailableError)).toBe(true);
      expect(told).toEqual(['unavailable:upstream_error', 'unavailable:upstream_error', 'unavailable:upstream_error']);
      expect(upstream.calls).toBe(2);
      expect(assistant.flightsInTheAir).toBe(0);
    });

    it('aborts the call once every request for it has gone, and drops the flight', async () => {
      await start({ CIRCUIT_BREAKER_TIMEOUT_SECONDS: '5' });
      upstream.setFault({ kind: 'hang' });
      const gone = [new AbortController(), new AbortController(), new AbortController()];
      const answers = three(
        KNOWN,
        gone.map((controller) => controller.signal),
      );
      await upstream.waitForCalls(1);
      gone[0].abort(new Error('leader gone'));
      gone[1].abort(new Error('follower gone'));
      expect(assistant.flightsInTheAir).toBe(1);
      gone[2].abort(new Error('last gone'));
      expect((await answers).map((a) => a.status === 'rejected' && (a.reason as Error).message)).toEqual([
        'leader gone',
        'follower gone',
        'last gone',
      ]);
      expect(assistant.flightsInTheAir).toBe(0);
      await upstream.waitForInFlight(0);
      expect(breakers.get('huggingface').snapshot().stats.failures).toBe(0);
    });

    it('drops the flight of a streamed leader that leaves at its excerpts event, before the model was asked', async () => {
      await start();
      const events = assistant.stream({ query: KNOWN });
      expect((await events.next()).value).toMatchObject({ type: 'excerpts' });
      expect(assistant.flightsInTheAir).toBe(1);
      await events.return();
      expect(assistant.flightsInTheAir).toBe(0);
      expect(upstream.calls).toBe(0);
    });

    it('makes one call per request with ASSISTANT_COALESCE=false', async () => {
      await start({ ASSISTANT_COALESCE: 'false' });
      upstream.setFault({ kind: 'ok', latencyMs: 200, answer: 'Each its own.' });
      const answers = await three(KNOWN);
      expect(answers.every((a) => a.status === 'fulfilled' && a.value.coalesced === undefined)).toBe(true);
      expect(upstream.calls).toBe(3);
    });
  });

  it('keeps calling the model on every request, never failing fast, with the breaker disabled', async () => {
    await start({ CIRCUIT_BREAKER_ENABLED: 'false' });
    upstream.setFault({ kind: 'error500' });
    for (let i = 0; i < 5; i++) await assistant.answer({ query: `${KNOWN} ${i}` });
    expect(upstream.calls).toBe(5);
    expect(breakers.get('huggingface').state).toBe('closed');
  });
});
