import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { fixed, markdownTable } from '../../bench/stats.js';
import { startAppProcess, type AppProcess } from '../support/app-process.js';
import type { Fault } from '../support/fake-hf-upstream.js';
import { RedisTestServer } from '../support/redis-server.js';
import { ask, circuitState, eventLoopDelayP99Ms, load, type LoadReport, rssBytes, until } from '../support/load.js';
import { pinCpus } from '../support/cpu-affinity.js';
import { UpstreamProcess } from './upstream-process.js';

// The real app process with a real Redis under bounded load (50 clients, loopback), one fault at a time.

// Bounds here must hold on a loaded 2-core machine while a real regression still breaks them: nobody waits for
// two time-outs, recovery within one reset period plus a second. The tight ones (time-out + 100 ms, recovery
// within the reset period) are measured by `npm run bench` against their goals.
const TIMEOUT_MS = 1000;
const RESET_MS = 800;
const THRESHOLD = 5;
const CLIENTS = 50;
/** Above CLIENTS, so only the scenario that brings more clients meets the bulkhead. */
const MAX_CONCURRENT = 60;
/** A waiting request is cut at the time-out; one that waits for two has hit a real fault (a retry, a hang). */
const MAX_WAIT_MS = 2 * TIMEOUT_MS;
/** Scheduling on a shared 2-core machine, on top of the reset period and the trial call. */
const RECOVERY_SLACK_MS = 1000;
/** After a warm-up: V8 grows its heap to a steady state (~300 MB here) over the first 20 000 requests. */
const RSS_GROWTH_LIMIT_MB = 32;

/** Questions the corpus answers (so a fallback always exists), cached before the faults begin. */
const CACHED = [
  'What does the half-open state mean?',
  'What should I do when the circuit opens?',
  'Which probe should Kubernetes use for readiness?',
];
/** Each scenario asks its own new questions; only CACHED repeat across scenarios. */
let round = 0;
/** Known to the corpus but never asked before: model, or excerpts when the model is out. */
const known = (i: number) => `How does the circuit breaker count consecutive failures? (${round}.${i})`;
/** Probably unknown to the corpus: model, or 503 when the model is out. */
const unknown = (i: number) => `zqxv wplk qrst (${round}.${i})`;
const mixed = (i: number) => (i % 3 === 0 ? CACHED[i % CACHED.length] : i % 3 === 1 ? known(i) : unknown(i));
const hasFallback = (question: string) => !question.startsWith('zqxv');

interface Row {
  scenario: string;
  report: LoadReport;
  eventLoopP99Ms: number;
  rssBeforeMb: number;
  rssAfterMb: number;
  upstreamCalls: number;
}

describe('chaos: the app under load while the model misbehaves', () => {
  let upstream: UpstreamProcess;
  let redis: RedisTestServer;
  let app: AppProcess;
  const rows: Row[] = [];
  let pinning = '';
  const env = () => ({
    HF_ENDPOINT_URL: upstream.url,
    REDIS_URL: redis.url,
    CIRCUIT_BREAKER_FAIL_THRESHOLD: String(THRESHOLD),
    CIRCUIT_BREAKER_TIMEOUT_SECONDS: String(TIMEOUT_MS / 1000),
    CIRCUIT_BREAKER_RESET_TIMEOUT: String(RESET_MS / 1000),
    CIRCUIT_BREAKER_MAX_CONCURRENT: String(MAX_CONCURRENT),
    SHUTDOWN_DRAIN_SECONDS: '0',
  });

  beforeAll(async () => {
    upstream = await UpstreamProcess.start();
    redis = await RedisTestServer.start();
    app = await startAppProcess(env(), { output: 'discard' });
    pinning = pinCpus(app.process.pid ?? 0, [process.pid, upstream.pid]);
    for (const question of CACHED) expect((await ask(app.url, question)).servedBy).toBe('llm');
    // A replica meets traffic warm in production (the readiness probe, the previous pod's share): no JIT in the bounds.
    await load(app.url, 500, CLIENTS, (i) => `warm-up question ${i}`);
  });

  afterAll(async () => {
    await app?.kill('SIGKILL');
    await redis?.stop();
    await upstream?.stop();
    const table = markdownTable(
      [
        'scenario',
        'requests',
        'statuses',
        'answers',
        'p50 ms',
        'p99 ms',
        'max ms',
        'loop p99 ms',
        'RSS MB before → after',
        'upstream calls',
      ],
      rows.map((r) => [
        r.scenario,
        r.report.requests,
        JSON.stringify(r.report.statuses),
        JSON.stringify(r.report.sources),
        fixed(r.report.p50Ms, 1),
        fixed(r.report.p99Ms, 1),
        fixed(r.report.maxMs, 1),
        fixed(r.eventLoopP99Ms, 1),
        `${fixed(r.rssBeforeMb, 0)} → ${fixed(r.rssAfterMb, 0)}`,
        r.upstreamCalls,
      ]),
    );
    process.stdout.write(
      `\nChaos (time-out ${TIMEOUT_MS} ms, reset ${RESET_MS} ms, threshold ${THRESHOLD}, ${CLIENTS} clients; ${pinning})\n${table}\n`,
    );
  });

  /** Model healthy and circuit closed again (a request may be needed to make the half-open trial happen). */
  async function healthy(): Promise<void> {
    await upstream.setFault({ kind: 'ok' });
    let i = 0;
    await until(
      async () => {
        if ((await circuitState(app.url)) === 'closed') return true;
        // After the reset period the next call is the half-open trial that closes the circuit.
        await ask(app.url, known(1e6 + i++));
        return false;
      },
      5000,
      'the circuit to close',
    );
  }

  async function run(
    scenario: string,
    fault: Fault,
    requests: number,
    question: (i: number) => string = mixed,
    clients = CLIENTS,
  ): Promise<LoadReport> {
    round++;
    await healthy();
    await eventLoopDelayP99Ms(app.url);
    const rssBefore = await rssBytes(app.process.pid ?? 0);
    const callsBefore = await upstream.calls();
    await upstream.setFault(fault);
    const report = await load(app.url, requests, clients, question);
    rows.push({
      scenario,
      report,
      eventLoopP99Ms: await eventLoopDelayP99Ms(app.url),
      rssBeforeMb: rssBefore / 2 ** 20,
      rssAfterMb: (await rssBytes(app.process.pid ?? 0)) / 2 ** 20,
      upstreamCalls: (await upstream.calls()) - callsBefore,
    });
    expectEveryRequestAnswered(report, question);
    return report;
  }

  /** No 500, no dropped connection, a 200 wherever a fallback exists, nobody waiting for two time-outs. */
  function expectEveryRequestAnswered(report: LoadReport, question: (i: number) => string): void {
    expect(report.statuses['500']).toBeUndefined();
    expect(report.statuses['0']).toBeUndefined();
    expect(Object.keys(report.statuses).filter((status) => status !== '200' && status !== '503')).toEqual([]);
    const unansweredWithFallback = report.outcomes.flatMap((outcome, i) =>
      hasFallback(question(i)) && outcome.status !== 200 ? [`${question(i)} → ${outcome.servedBy}`] : [],
    );
    expect(unansweredWithFallback).toEqual([]);
    expect(report.maxMs).toBeLessThan(MAX_WAIT_MS);
  }

  /** While open, only the single half-open trial per reset period reaches the model. */
  async function expectOnlyTrialsWhileOpen(): Promise<void> {
    expect(await circuitState(app.url)).not.toBe('closed');
    const callsBefore = await upstream.calls();
    const started = performance.now();
    const report = await load(app.url, 1500, CLIENTS, (i) => known(2e6 + i));
    const elapsedMs = performance.now() - started;
    expect(report.statuses['200']).toBe(1500);
    expect((await upstream.calls()) - callsBefore).toBeLessThanOrEqual(Math.floor(elapsedMs / RESET_MS) + 1);
  }

  /** After the model returns, the circuit closes within one reset period and a trial call (plus scheduling slack). */
  async function expectRecoveryWithinOneResetPeriod(): Promise<void> {
    await upstream.setFault({ kind: 'ok' });
    const back = performance.now();
    let i = 0;
    await until(
      async () => (await ask(app.url, known(3e6 + i++))).servedBy === 'llm',
      RESET_MS + TIMEOUT_MS + RECOVERY_SLACK_MS,
      'an answer from the model again',
    );
    expect(performance.now() - back).toBeLessThanOrEqual(RESET_MS + TIMEOUT_MS + RECOVERY_SLACK_MS);
    expect(await circuitState(app.url)).toBe('closed');
  }

  it('answers everything from the model when it is well', async () => {
    const report = await run('ok', { kind: 'ok' }, 1500);
    expect(report.statuses).toEqual({ '200': 1500 });
  });

  it('answers everything with a slow model (200 ms ± 100 ms)', async () => {
    const report = await run('latency + jitter', { kind: 'ok', latencyMs: 150, jitterMs: 100 }, 1000);
    expect(report.statuses).toEqual({ '200': 1000 });
  });

  it('waits for a model just under the time-out, and never falls back', async () => {
    const report = await run('slow, under time-out', { kind: 'ok', latencyMs: TIMEOUT_MS - 400 }, 300, (i) => known(4e6 + i));
    expect(report.sources).toEqual({ llm: 300 });
  });

  it('cuts a model just over the time-out, opens, and serves fallbacks', async () => {
    const report = await run('slow, just over time-out', { kind: 'ok', latencyMs: TIMEOUT_MS + 250 }, 600, (i) => known(5e6 + i));
    expect(report.statuses).toEqual({ '200': 600 });
    // Every call was cut at the time-out: an answer from the model would mean a caller waited for it.
    expect(report.sources['llm']).toBeUndefined();
    await expectOnlyTrialsWhileOpen();
    await expectRecoveryWithinOneResetPeriod();
  });

  it.each<[string, Fault]>([
    ['500', { kind: 'error500' }],
    // Wait hints hold the circuit open that long: a short one keeps the recovery check within its bound.
    ['503 model loading', { kind: 'loading503', estimatedTimeSeconds: 1 }],
    ['429 with Retry-After', { kind: 'rateLimited429', retryAfterSeconds: 1 }],
    ['connection reset', { kind: 'reset' }],
    ['malformed JSON', { kind: 'malformed' }],
    ['truncated body', { kind: 'truncated' }],
    ['hang', { kind: 'hang' }],
  ])('keeps answering through a model that fails with %s, sends only trials while open, and heals', async (name, fault) => {
    const report = await run(name, fault, 1500);
    expect(report.sources['cache']).toBeGreaterThan(0);
    expect(report.sources['excerpts']).toBeGreaterThan(0);
    await expectOnlyTrialsWhileOpen();
    await expectRecoveryWithinOneResetPeriod();
    await upstream.waitForInFlight(0, TIMEOUT_MS * 2);
  });

  it('never opens for a model failing every third call, and answers everything', async () => {
    const report = await run('flapping (every 3rd fails)', { kind: 'flapping', every: 3 }, 1500);
    expect(report.statuses['503'] ?? 0).toBeLessThan(report.requests);
    expect(await circuitState(app.url)).toBe('closed');
  });

  it('keeps a slow model to the bulkhead under 200 clients and answers the rest at once as overloaded, never a 500', async () => {
    const report = await run('slow model, 200 clients (bulkhead)', { kind: 'ok', latencyMs: 600 }, 1200, (i) => known(6e6 + i), 200);
    expect(report.statuses).toEqual({ '200': 1200 });
    expect((await upstream.stats()).peakInFlight).toBeLessThanOrEqual(MAX_CONCURRENT);
    expect(report.sources['llm']).toBeGreaterThan(0);
    expect(report.reasons['overloaded']).toBeGreaterThan(0);
    expect(await circuitState(app.url)).toBe('closed');
  });

  it('obeys a 429 with Retry-After: 3 s: one model call, none while it holds, then one trial', async () => {
    round++;
    await healthy();
    await upstream.setFault({ kind: 'rateLimited429', retryAfterSeconds: 3 });
    const callsBefore = await upstream.calls();
    const opened = performance.now();
    expect(await ask(app.url, known(7e6))).toMatchObject({ status: 200, fallbackReason: 'rate_limited' });
    await upstream.setFault({ kind: 'ok' });
    // A second of margin before the hint runs out: on a loaded machine a request can take a few hundred ms.
    for (let i = 1; performance.now() - opened < 2000; i++) {
      expect(await ask(app.url, known(7e6 + i))).toMatchObject({ status: 200, fallbackReason: 'circuit_open' });
    }
    expect(await upstream.calls()).toBe(callsBefore + 1);
    let i = 0;
    await until(async () => (await ask(app.url, known(7.5e6 + i++))).servedBy === 'llm', 10_000, 'the trial after the hint');
    expect(performance.now() - opened).toBeGreaterThanOrEqual(3000);
    expect(await upstream.calls()).toBe(callsBefore + 2);
  });

  it('aborts the model calls of clients that disconnect mid-call: the model sees each socket closed, the circuit does not move', async () => {
    round++;
    await healthy();
    await upstream.setFault({ kind: 'hang' });
    const clients = Array.from({ length: CLIENTS }, () => new AbortController());
    const requests = clients.map((client, k) =>
      fetch(`${app.url}/assistant/query`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: known(8e6 + k) }),
        signal: client.signal,
      }).catch(() => 'aborted'),
    );
    await until(async () => (await upstream.stats()).inFlight >= CLIENTS, 10_000, 'every call to reach the model');
    for (const client of clients) client.abort();
    await Promise.all(requests);
    await upstream.waitForInFlight(0, 10_000);
    // Past the time-out: had the calls not been aborted, they would have timed out as failures and opened the circuit.
    await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS + 500));
    const entry = (await (await fetch(`${app.url}/health/circuit-breaker`)).json()) as {
      details: Record<string, { state: string; failures: number }>;
    };
    expect(entry.details['huggingface']).toMatchObject({ state: 'closed', failures: 0 });
  });

  it('streams to 50 clients through a flapping model: every stream ends with done, or is a 503 before any event; no 500, none left open', async () => {
    round++;
    await healthy();
    // Every other call fails: a stall before the first token, a cut after two tokens, or a 500 before the stream.
    await upstream.setFault({
      kind: 'sequence',
      faults: Array.from({ length: 2000 }, (_, i): Fault => {
        const failures: Fault[] = [{ kind: 'stallBeforeFirstToken' }, { kind: 'cutMidStream', afterTokens: 2 }, { kind: 'error500' }];
        return i % 2 === 0 ? { kind: 'ok', tokenIntervalMs: 5 } : (failures[(i >> 1) % failures.length] ?? { kind: 'ok' });
      }),
    });
    const total = 400;
    let next = 0;
    const endings: Record<string, number> = {};
    const problems: string[] = [];
    const streamOne = async (i: number): Promise<void> => {
      const question = i % 4 === 3 ? unknown(9e6 + i) : known(9e6 + i);
      const response = await fetch(`${app.url}/assistant/query`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ query: question }),
        signal: AbortSignal.timeout(10_000),
      });
      const text = await response.text();
      const type = response.headers.get('content-type') ?? '';
      let ending: string;
      if (response.status === 200 && type.startsWith('text/event-stream')) {
        const last = text.trimEnd().split('\n\n').at(-1) ?? '';
        const done = last.startsWith('event: done\ndata: ')
          ? (JSON.parse(last.slice('event: done\ndata: '.length)) as { source: string; fallbackReason: string | null })
          : undefined;
        ending = done ? `done/${done.source}/${done.fallbackReason ?? 'none'}` : 'stream without done';
        if (!text.startsWith('event: excerpts')) problems.push(`${question}: stream did not start with excerpts`);
      } else if (response.status === 503 && type.startsWith('application/json') && Number(response.headers.get('retry-after')) >= 1) {
        ending = '503 before any event';
        if (hasFallback(question)) problems.push(`${question}: 503 though a fallback exists`);
      } else ending = `unexpected ${response.status} ${type}`;
      endings[ending] = (endings[ending] ?? 0) + 1;
      if (ending === 'stream without done' || ending.startsWith('unexpected')) problems.push(`${question}: ${ending}`);
    };
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        for (let i = next++; i < total; i = next++) await streamOne(i);
      }),
    );
    process.stdout.write(`\nStreams through a flapping model: ${JSON.stringify(endings)}\n`);
    expect(problems).toEqual([]);
    expect(Object.values(endings).reduce((sum, n) => sum + n, 0)).toBe(total);
    expect(Object.keys(endings).some((ending) => ending.startsWith('done/llm/none'))).toBe(true);
    // No stream left open: the model side ended every stream, and the breaker holds no call.
    await until(async () => (await upstream.stats()).openStreams === 0, 10_000, 'every upstream stream to end');
    const breaker = (await (await fetch(`${app.url}/health/circuit-breaker`)).json()) as { details: Record<string, { inFlight: number }> };
    expect(breaker.details['huggingface']?.inFlight).toBe(0);
  });

  it('keeps answering while Redis is killed and restarted mid-run', async () => {
    const killed = (async () => {
      await new Promise((resolve) => setTimeout(resolve, 300));
      await redis.kill();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await redis.restart();
    })();
    const report = await run('Redis killed and restarted', { kind: 'ok' }, 4000);
    await killed;
    expect(report.statuses).toEqual({ '200': 4000 });
  });

  it('serves the cache Redis holds after the app restarts, without asking the model', async () => {
    await healthy();
    for (const question of CACHED) await ask(app.url, question);
    await app.kill('SIGTERM');
    app = await startAppProcess(env(), { output: 'discard' });
    pinCpus(app.process.pid ?? 0, []);
    await upstream.setFault({ kind: 'error500' });
    const callsBefore = await upstream.calls();
    const report = await load(app.url, 600, CLIENTS, (i) => CACHED[i % CACHED.length]);
    expect(report.sources).toEqual({ cache: 600 });
    expect(await upstream.calls()).toBe(callsBefore);
  });

  it(`grows RSS by less than ${RSS_GROWTH_LIMIT_MB} MB over 20 000 requests once warmed up (no leak)`, async () => {
    const question = (i: number) => (i % 2 === 0 ? CACHED[i % CACHED.length] : known(i));
    await run('warm-up, 20 000 requests', { kind: 'ok' }, 20_000, question);
    // V8 sometimes takes its last step to a steady heap during the first window after the warm-up (one run grew
    // 33 MB there, the next window a few): a second window tells that one-time step from a leak, which grows in both.
    let growthMb = Number.POSITIVE_INFINITY;
    for (let window = 1; window <= 2 && growthMb >= RSS_GROWTH_LIMIT_MB; window++) {
      const report = await run(`20 000 requests (RSS, window ${window})`, { kind: 'ok' }, 20_000, question);
      const row = rows[rows.length - 1];
      expect(report.statuses).toEqual({ '200': 20_000 });
      growthMb = (row?.rssAfterMb ?? Number.NaN) - (row?.rssBeforeMb ?? Number.NaN);
    }
    expect(growthMb).toBeLessThan(RSS_GROWTH_LIMIT_MB);
  }, 200_000);
});
