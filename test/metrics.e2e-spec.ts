// GET /metrics over real HTTP, as Prometheus scrapes it: the app as main.ts builds it, the fake HF upstream on loopback.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import { ask, type UnavailableBody, waitForBreakerState } from './support/http.js';
import { startTestApp, type TestApp } from './support/test-app.js';

const KNOWN = [
  'What does half-open mean?',
  'How does the answer cache work?',
  'What does the Retry-After header say?',
  'Which variables configure the model?',
] as const;
const NONSENSE = ['zqxj vvkw', 'qzjx wvkv', 'xjqz kvvw', 'jxzq vwkv'] as const;
const THRESHOLD = 3;
const BREAKER = 'huggingface';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Scrape {
  contentType: string | null;
  text: string;
  samples: Sample[];
}

/** The text exposition format, minimally: `name{label="value",...} number` a line, comments skipped. */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const label of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[label[1]] = label[2];
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

async function scrape(url: string): Promise<Scrape> {
  const response = await fetch(`${url}/metrics`);
  expect(response.status).toBe(200);
  const text = await response.text();
  return { contentType: response.headers.get('content-type'), text, samples: parseExposition(text) };
}

/** The sum over the series of `name` whose labels include `labels`; undefined when there is no such series. */
function valueOf({ samples }: Scrape, name: string, labels: Record<string, string> = {}): number | undefined {
  const matching = samples.filter(
    (sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  );
  return matching.length === 0 ? undefined : matching.reduce((sum, sample) => sum + sample.value, 0);
}

const breakerState = (metrics: Scrape) => valueOf(metrics, 'assistant_circuit_breaker_state', { breaker: BREAKER });
const breakerEvents = (metrics: Scrape, event: string) =>
  valueOf(metrics, 'assistant_circuit_breaker_events_total', { breaker: BREAKER, event });
const answers = (metrics: Scrape, source: string, fallbackReason: string) =>
  valueOf(metrics, 'assistant_answers_total', { source, fallback_reason: fallbackReason }) ?? 0;
const upstreamCalls = (metrics: Scrape, outcome: string) =>
  valueOf(metrics, 'assistant_upstream_call_duration_seconds_count', { breaker: BREAKER, outcome }) ?? 0;

describe('GET /metrics', () => {
  let upstream: FakeHfUpstream;
  let testApp: TestApp;

  async function start(env: Record<string, string> = {}): Promise<string> {
    testApp = await startTestApp({ HF_ENDPOINT_URL: upstream.url, ...env });
    return testApp.url;
  }

  /** THRESHOLD failing questions with nothing to fall back on: three 503s, the circuit open after the last. */
  async function openCircuit(url: string): Promise<void> {
    upstream.setFault({ kind: 'error500' });
    let last: UnavailableBody | undefined;
    for (const query of NONSENSE.slice(0, THRESHOLD)) last = (await ask<UnavailableBody>(url, { query })).body;
    expect(last?.circuit.state).toBe('open');
  }

  beforeAll(async () => {
    upstream = await FakeHfUpstream.start();
  });
  afterAll(() => upstream.close());
  beforeEach(() => upstream.reset());
  afterEach(() => testApp.close());

  it('serves the Prometheus text format with every metric the dashboard uses, default process metrics included', async () => {
    const metrics = await scrape(await start());

    expect(metrics.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    for (const name of [
      'assistant_circuit_breaker_state',
      'assistant_circuit_breaker_scope',
      'assistant_circuit_breaker_events_total',
      'assistant_answers_total',
      'http_request_duration_seconds',
      'assistant_upstream_call_duration_seconds',
      'assistant_cache_requests_total',
    ]) {
      expect(metrics.text).toContain(`# TYPE ${name} `);
    }
    expect(valueOf(metrics, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(valueOf(metrics, 'nodejs_eventloop_lag_p99_seconds')).toBeDefined();
  });

  it('moves the breaker state gauge 0 → 2 → 1 → 0 as the circuit opens, turns half-open and closes on a successful trial', async () => {
    const url = await start({ CIRCUIT_BREAKER_RESET_TIMEOUT: '1' });
    expect(breakerState(await scrape(url))).toBe(0);

    await openCircuit(url);
    const open = await scrape(url);
    expect(breakerState(open)).toBe(2);
    expect(breakerEvents(open, 'failure')).toBe(THRESHOLD);
    expect(breakerEvents(open, 'open')).toBe(1);

    expect((await ask(url, { query: KNOWN[0] })).body).toMatchObject({ source: 'excerpts', fallbackReason: 'circuit_open' });
    expect(breakerEvents(await scrape(url), 'reject')).toBe(1);

    await waitForBreakerState(url, BREAKER, 'half_open');
    const halfOpen = await scrape(url);
    expect(breakerState(halfOpen)).toBe(1);
    expect(breakerEvents(halfOpen, 'half_open')).toBe(1);

    upstream.setFault({ kind: 'ok' });
    expect((await ask(url, { query: KNOWN[1] })).body.source).toBe('llm');
    const closed = await scrape(url);
    expect(breakerState(closed)).toBe(0);
    expect(breakerEvents(closed, 'close')).toBe(1);
    expect(breakerEvents(closed, 'success')).toBe(1);
    expect(upstreamCalls(closed, 'failure')).toBe(THRESHOLD);
    expect(upstreamCalls(closed, 'success')).toBe(1);
  });

  it('times each upstream call once under its outcome, and counts a time-out as a failure and a timeout', async () => {
    const url = await start();
    upstream.setFault({ kind: 'sequence', faults: [{ kind: 'ok' }, { kind: 'error500' }, { kind: 'hang' }, { kind: 'unprocessable' }] });
    const reasons = [];
    for (const query of KNOWN) reasons.push((await ask(url, { query })).body.fallbackReason);
    expect(reasons).toEqual([null, 'upstream_error', 'timeout', 'upstream_error']);
    await upstream.waitForInFlight(0);

    const metrics = await scrape(url);
    expect(['success', 'failure', 'timeout', 'neutral'].map((outcome) => upstreamCalls(metrics, outcome))).toEqual([1, 1, 1, 1]);
    expect(valueOf(metrics, 'assistant_upstream_call_duration_seconds_sum', { outcome: 'timeout' })).toBeGreaterThanOrEqual(0.5);
    expect(breakerEvents(metrics, 'failure')).toBe(2);
    expect(breakerEvents(metrics, 'timeout')).toBe(1);
    expect(breakerEvents(metrics, 'success')).toBe(1);
  });

  it('counts answers by source and fallback reason: llm, cache, excerpts on circuit_open and 503s as unavailable', async () => {
    const url = await start({ CIRCUIT_BREAKER_RESET_TIMEOUT: '30' });
    expect((await ask(url, { query: KNOWN[0] })).body.source).toBe('llm');
    expect((await ask(url, { query: KNOWN[0] })).body.source).toBe('cache');
    await openCircuit(url);
    expect((await ask(url, { query: KNOWN[1] })).body).toMatchObject({ source: 'excerpts', fallbackReason: 'circuit_open' });
    expect((await ask(url, { query: NONSENSE[3] })).status).toBe(503);
    expect((await ask(url, { query: '' })).status).toBe(400);

    const metrics = await scrape(url);
    expect(answers(metrics, 'llm', 'none')).toBe(1);
    expect(answers(metrics, 'cache', 'none')).toBe(1);
    expect(answers(metrics, 'excerpts', 'circuit_open')).toBe(1);
    // The failure that opens the circuit is still reported as that failure.
    expect(answers(metrics, 'unavailable', 'upstream_error')).toBe(THRESHOLD);
    expect(answers(metrics, 'unavailable', 'circuit_open')).toBe(1);
    expect(valueOf(metrics, 'assistant_answers_total')).toBe(THRESHOLD + 4);
  });

  it('counts answer-cache lookups by result: a repeated question is a fresh hit', async () => {
    const url = await start();
    await ask(url, { query: KNOWN[0] });
    await ask(url, { query: `  ${KNOWN[0].toUpperCase()}  ` });

    const metrics = await scrape(url);
    expect(valueOf(metrics, 'assistant_cache_requests_total', { store: 'memory', result: 'fresh_hit' })).toBe(1);
    expect(valueOf(metrics, 'assistant_cache_requests_total', { store: 'memory', result: 'miss' })).toBe(1);
    expect(valueOf(metrics, 'assistant_cache_requests_total', { store: 'memory', result: 'error' })).toBe(0);
  });

  it('times requests by route template and status code, and every unknown path as one "unmatched" route', async () => {
    const url = await start();
    await ask(url, { query: KNOWN[0] });
    await fetch(`${url}/health/ready`);
    expect((await fetch(`${url}/nope/123`)).status).toBe(404);
    expect((await fetch(`${url}/nope/456?x=1`)).status).toBe(404);

    const metrics = await scrape(url);
    const count = (labels: Record<string, string>) => valueOf(metrics, 'http_request_duration_seconds_count', labels);
    expect(count({ method: 'POST', route: '/assistant/query', status_code: '200' })).toBe(1);
    expect(count({ method: 'GET', route: '/health/ready', status_code: '200' })).toBe(1);
    expect(count({ method: 'GET', route: 'unmatched', status_code: '404' })).toBe(2);
    expect(metrics.text).not.toContain('/nope/');
  });
});
