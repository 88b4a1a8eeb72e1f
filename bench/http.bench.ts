import autocannon from 'autocannon';
import { FakeHfUpstream, type Fault } from '../test/support/fake-hf-upstream.js';
import { startAppProcess, type AppProcess } from '../test/support/app-process.js';
import { pinCpus } from '../test/support/cpu-affinity.js';
import { RedisTestServer } from '../test/support/redis-server.js';
import { fixed, markdownTable } from './stats.js';

// Against the built app in its own process (node dist/main.js), loopback only, 50 connections per scenario.

export const CONNECTIONS = 50;
const DURATION_SECONDS = 5;
const WARMUP_SECONDS = 1;
const THRESHOLD = 5;
export const KNOWN_QUESTION = 'What does the half-open state mean?';
const JSON_HEADERS = { 'content-type': 'application/json' };

export interface HttpScenarioResult {
  name: string;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
  /** The answer's source and fallbackReason, checked once after the run. */
  served: string;
  ratioToBare?: number;
  goal?: string;
}

export interface OutageTimings {
  detectMs: number;
  recoverMs: number;
  upstreamCallsWhileOpen: number;
  resetTimeoutMs: number;
}

/** The slowest answer while the model misbehaves, against the goal that nobody waits past the time-out + 100 ms. */
export interface WaitBound {
  name: string;
  requests: number;
  p99Ms: number;
  maxMs: number;
  goalMs: number;
}

/** The tight waiting bounds the chaos suite asserts only loosely (a loaded CI cannot hold 100 ms of slack). */
const WAIT_TIMEOUT_MS = 800;
const WAIT_SLACK_MS = 100;
const OPEN_WINDOW_MS = 2500;

export interface Load {
  method: 'GET' | 'POST';
  path: string;
  body?: string;
  /** Sent with every request, after the content type (an API key). */
  headers?: Record<string, string>;
  /** A new question per request (the body's question plus a number), so nothing repeats. */
  uniqueBodies?: boolean;
}

export async function measure(app: AppProcess, load: Load, seconds: number): Promise<autocannon.Result> {
  let n = 0;
  const options: autocannon.Options = {
    url: app.url,
    connections: CONNECTIONS,
    duration: seconds,
    requests: [
      {
        method: load.method,
        path: load.path,
        headers: { ...(load.body ? JSON_HEADERS : {}), ...load.headers },
        ...(load.body ? { body: load.body } : {}),
        ...(load.uniqueBodies ? { setupRequest: (request) => ({ ...request, body: numbered(load.body, n++) }) } : {}),
      },
    ],
  };
  return autocannon(options);
}

async function scenario(name: string, app: AppProcess, load: Load): Promise<HttpScenarioResult> {
  await measure(app, load, WARMUP_SECONDS);
  const result = await measure(app, load, DURATION_SECONDS);
  return {
    name,
    requestsPerSecond: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    served: load.body ? await servedBy(app, load.uniqueBodies ? numbered(load.body, -1) : load.body) : 'live',
  };
}

function numbered(body: string | undefined, n: number): string {
  const { query } = JSON.parse(body ?? '{}') as { query: string };
  return JSON.stringify({ query: `${query} #${n}` });
}

async function ask(app: AppProcess, query: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${app.url}/assistant/query`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ query }) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function servedBy(app: AppProcess, body: string): Promise<string> {
  const { body: answer } = await ask(app, (JSON.parse(body) as { query: string }).query);
  return `${String(answer['source'])}${answer['fallbackReason'] ? ` (${String(answer['fallbackReason'])})` : ''}`;
}

async function openCircuit(app: AppProcess, upstream: FakeHfUpstream): Promise<void> {
  upstream.setFault({ kind: 'error500' });
  for (let i = 0; i < THRESHOLD; i++) await ask(app, `unrelated question number ${i}`);
}

export function appEnv(upstream: FakeHfUpstream, extra: Record<string, string> = {}): Record<string, string> {
  return {
    HF_ENDPOINT_URL: upstream.url,
    CIRCUIT_BREAKER_FAIL_THRESHOLD: String(THRESHOLD),
    CIRCUIT_BREAKER_RESET_TIMEOUT: '3600',
    // The app refuses a cap below the reset period (the default cap is 300 s); no backoff, so it changes nothing else.
    CIRCUIT_BREAKER_MAX_OPEN_SECONDS: '3600',
    CIRCUIT_BREAKER_TIMEOUT_SECONDS: '5',
    SHUTDOWN_DRAIN_SECONDS: '0',
    ...extra,
  };
}

export interface HttpBenchResult {
  scenarios: HttpScenarioResult[];
  outage: OutageTimings;
  waits: WaitBound[];
  pinning: string;
}

export async function runHttpBench(): Promise<HttpBenchResult> {
  const upstream = await FakeHfUpstream.start();
  const redis = await RedisTestServer.start();
  const apps: AppProcess[] = [];
  let pinning = '';
  const start = async (env: Record<string, string>) => {
    const app = await startAppProcess(env, { output: 'discard' });
    pinning = pinCpus(app.process.pid ?? 0, [process.pid]);
    apps.push(app);
    return app;
  };
  try {
    const known = JSON.stringify({ query: KNOWN_QUESTION });
    const scenarios: HttpScenarioResult[] = [];

    const memoryApp = await start(appEnv(upstream));
    scenarios.push(await scenario('bare route (GET /health/live)', memoryApp, { method: 'GET', path: '/health/live' }));
    await ask(memoryApp, KNOWN_QUESTION);
    scenarios.push(await scenario('fresh cache hit (memory)', memoryApp, { method: 'POST', path: '/assistant/query', body: known }));
    const [callsBefore, connectionsBefore] = [upstream.calls, upstream.connections];
    const healthy = await scenario('healthy path, zero-latency upstream', memoryApp, {
      method: 'POST',
      path: '/assistant/query',
      body: known,
      uniqueBodies: true,
    });
    // The app's model calls reuse keep-alive connections (Node's global fetch): say how many it opened.
    const connections = `${upstream.connections - connectionsBefore} connections for ${upstream.calls - callsBefore} model calls`;
    scenarios.push({ ...healthy, served: `${healthy.served}; ${connections}` });
    await openCircuit(memoryApp, upstream);
    const excerptsBody = JSON.stringify({ query: 'How do I read nextAttemptAt on the breaker route?' });
    scenarios.push(await scenario('open circuit → excerpts', memoryApp, { method: 'POST', path: '/assistant/query', body: excerptsBody }));
    scenarios.push(
      await scenario('open circuit → excerpts, every question new', memoryApp, {
        method: 'POST',
        path: '/assistant/query',
        body: excerptsBody,
        uniqueBodies: true,
      }),
    );

    upstream.reset();
    const redisApp = await start(appEnv(upstream, { REDIS_URL: redis.url }));
    await ask(redisApp, KNOWN_QUESTION);
    scenarios.push(await scenario('fresh cache hit (Redis)', redisApp, { method: 'POST', path: '/assistant/query', body: known }));

    upstream.reset();
    const staleApp = await start(appEnv(upstream, { CACHE_TTL_SECONDS: '1' }));
    await ask(staleApp, KNOWN_QUESTION);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await openCircuit(staleApp, upstream);
    scenarios.push(await scenario('open circuit → stale cache', staleApp, { method: 'POST', path: '/assistant/query', body: known }));

    upstream.reset();
    const outage = await measureOutage(
      await start(appEnv(upstream, { CIRCUIT_BREAKER_RESET_TIMEOUT: '1', CIRCUIT_BREAKER_TIMEOUT_SECONDS: '0.5' })),
      upstream,
    );

    upstream.reset();
    // One app: cold for the first row (a replica's first traffic), warm for the time-out rows that follow.
    const waitApp = await start(
      appEnv(upstream, { CIRCUIT_BREAKER_TIMEOUT_SECONDS: String(WAIT_TIMEOUT_MS / 1000), CIRCUIT_BREAKER_RESET_TIMEOUT: '0.8' }),
    );
    const waits = [
      await measureWait('healthy model, app just started', waitApp, upstream, { kind: 'ok' }),
      await measureWait('healthy model, app warm', waitApp, upstream, { kind: 'ok' }),
      await measureWait('model hangs', waitApp, upstream, { kind: 'hang' }),
      await measureWait('model answers 250 ms after the time-out', waitApp, upstream, { kind: 'ok', latencyMs: WAIT_TIMEOUT_MS + 250 }),
    ];
    return { scenarios: withGoals(scenarios), outage, waits, pinning };
  } finally {
    await Promise.all(apps.map((app) => app.kill('SIGTERM')));
    await redis.stop();
    await upstream.close();
  }
}

/**
 * 50 connections asking new questions for a few seconds while the upstream behaves as `fault`: how long the slowest
 * waited. Starts from a closed circuit (the model healthy until a trial has closed it).
 */
async function measureWait(name: string, app: AppProcess, upstream: FakeHfUpstream, fault: Fault): Promise<WaitBound> {
  upstream.setFault({ kind: 'ok' });
  for (let i = 0; (await ask(app, `${KNOWN_QUESTION} closing #${i}`)).body['source'] !== 'llm'; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  upstream.setFault(fault);
  const body = JSON.stringify({ query: `${KNOWN_QUESTION} ${name}` });
  const result = await measure(app, { method: 'POST', path: '/assistant/query', body, uniqueBodies: true }, 3);
  upstream.setFault({ kind: 'ok' });
  return {
    name,
    requests: result.requests.total,
    p99Ms: result.latency.p99,
    maxMs: result.latency.max,
    goalMs: WAIT_TIMEOUT_MS + WAIT_SLACK_MS,
  };
}

/** Steady traffic of unique questions; the model fails, then returns. How long until the app notices each. */
async function measureOutage(app: AppProcess, upstream: FakeHfUpstream): Promise<OutageTimings> {
  let n = 0;
  let running = true;
  let lastState = 'closed';
  let lastSource = 'llm';
  const client = async () => {
    while (running) {
      const { body } = await ask(app, `${KNOWN_QUESTION} outage #${n++}`);
      lastState = String((body['circuit'] as { state?: string } | undefined)?.state ?? 'unknown');
      lastSource = String(body['source']);
    }
  };
  const clients = Array.from({ length: 10 }, client);
  const waitFor = async (condition: () => boolean) => {
    while (!condition()) await new Promise((resolve) => setImmediate(resolve));
  };
  await new Promise((resolve) => setTimeout(resolve, 500));
  const outageAt = performance.now();
  upstream.setFault({ kind: 'error500' });
  await waitFor(() => lastState === 'open');
  const detectMs = performance.now() - outageAt;
  const callsAtOpen = upstream.calls;
  await new Promise((resolve) => setTimeout(resolve, OPEN_WINDOW_MS));
  const upstreamCallsWhileOpen = upstream.calls - callsAtOpen;
  const recoveryAt = performance.now();
  upstream.setFault({ kind: 'ok' });
  await waitFor(() => lastState === 'closed' && lastSource === 'llm');
  const recoverMs = performance.now() - recoveryAt;
  running = false;
  await Promise.all(clients);
  return { detectMs, recoverMs, upstreamCallsWhileOpen, resetTimeoutMs: 1000 };
}

const GOALS: Record<string, { minRatio?: number; maxP99Ms?: number }> = {
  'fresh cache hit (memory)': { minRatio: 0.6, maxP99Ms: 20 },
  'fresh cache hit (Redis)': { minRatio: 0.4, maxP99Ms: 20 },
  'open circuit → excerpts': { minRatio: 0.5, maxP99Ms: 20 },
  'open circuit → excerpts, every question new': { minRatio: 0.5, maxP99Ms: 20 },
  'open circuit → stale cache': { minRatio: 0.5, maxP99Ms: 20 },
};

function withGoals(scenarios: HttpScenarioResult[]): HttpScenarioResult[] {
  const bare = scenarios[0]?.requestsPerSecond ?? Number.NaN;
  return scenarios.map((result) => {
    const goal = GOALS[result.name];
    const ratioToBare = result.requestsPerSecond / bare;
    if (!goal) return { ...result, ratioToBare };
    const checks = [
      goal.minRatio !== undefined ? `≥ ${goal.minRatio * 100} % of bare: ${ratioToBare >= goal.minRatio ? 'met' : 'MISSED'}` : '',
      goal.maxP99Ms !== undefined ? `p99 ≤ ${goal.maxP99Ms} ms: ${result.p99Ms <= goal.maxP99Ms ? 'met' : 'MISSED'}` : '',
    ].filter(Boolean);
    return { ...result, ratioToBare, goal: checks.join('; ') };
  });
}

export function httpTables({ scenarios, outage, waits, pinning }: HttpBenchResult): string {
  const throughput = markdownTable(
    [
      `HTTP, ${CONNECTIONS} connections, ${DURATION_SECONDS} s each`,
      'req/s',
      '× bare',
      'p50 ms',
      'p99 ms',
      'non-2xx',
      'errors',
      'served by',
      'goal',
    ],
    scenarios.map((s) => [
      s.name,
      fixed(s.requestsPerSecond, 0),
      fixed(s.ratioToBare ?? Number.NaN),
      fixed(s.p50Ms, 1),
      fixed(s.p99Ms, 1),
      s.non2xx,
      s.errors,
      s.served,
      s.goal ?? '',
    ]),
  );
  const maxTrials = Math.floor(OPEN_WINDOW_MS / outage.resetTimeoutMs) + 1;
  const recoverGoalMs = outage.resetTimeoutMs + WAIT_SLACK_MS;
  const timings = markdownTable(
    ['scripted outage (10 clients, threshold 5, reset 1 s, time-out 0.5 s)', 'value', 'goal'],
    [
      ['time to detect (model fails → circuit open)', `${fixed(outage.detectMs, 0)} ms`, ''],
      [
        `upstream calls during ${OPEN_WINDOW_MS / 1000} s open (trials only)`,
        String(outage.upstreamCallsWhileOpen),
        `≤ ${maxTrials}: ${outage.upstreamCallsWhileOpen <= maxTrials ? 'met' : 'MISSED'}`,
      ],
      [
        'time to recover (model back → circuit closed, answers from llm)',
        `${fixed(outage.recoverMs, 0)} ms`,
        `≤ reset + ${WAIT_SLACK_MS} ms (${recoverGoalMs} ms): ${outage.recoverMs <= recoverGoalMs ? 'met' : 'MISSED'}`,
      ],
    ],
  );
  const bounds = markdownTable(
    [
      `slowest wait, ${CONNECTIONS} connections × 3 s, new questions, time-out ${WAIT_TIMEOUT_MS} ms`,
      'requests',
      'p99 ms',
      'max ms',
      'goal',
    ],
    waits.map((w) => [
      w.name,
      w.requests,
      fixed(w.p99Ms, 0),
      fixed(w.maxMs, 0),
      `max ≤ time-out + ${WAIT_SLACK_MS} ms (${w.goalMs} ms): ${w.maxMs <= w.goalMs ? 'met' : 'MISSED'}`,
    ]),
  );
  return `Against node dist/main.js (logs at info to /dev/null, metrics on; ${pinning}).\n\n${throughput}\n\n${timings}\n\n${bounds}`;
}
