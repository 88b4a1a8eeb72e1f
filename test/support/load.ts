import { readFile } from 'node:fs/promises';
import { percentile } from '../../bench/stats.js';

export interface Outcome {
  status: number;
  /** `source`, with "stale" for a degraded cache answer; the HTTP status otherwise; "dropped" when no answer came. */
  servedBy: string;
  latencyMs: number;
  circuitState?: string;
  fallbackReason?: string;
  /** The model target that wrote the answer, when one did. */
  model?: string;
}

export interface LoadReport {
  requests: number;
  statuses: Record<string, number>;
  sources: Record<string, number>;
  /** Degraded answers by fallbackReason. */
  reasons: Record<string, number>;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  outcomes: Outcome[];
}

interface Answer {
  source?: string;
  degraded?: boolean;
  fallbackReason?: string | null;
  circuit?: { state?: string };
  model?: string;
}

/** One POST /assistant/query, never throwing: a connection that drops is an outcome too. */
export async function ask(url: string, query: string): Promise<Outcome> {
  const sent = performance.now();
  try {
    const response = await fetch(`${url}/assistant/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query }),
    });
    // The wait ends when the server answers; parsing the body is this client's own time.
    const latencyMs = performance.now() - sent;
    const body = (await response.json()) as Answer;
    const servedBy =
      response.status === 200 ? `${body.source}${body.degraded && body.source === 'cache' ? ' (stale)' : ''}` : String(response.status);
    return {
      status: response.status,
      servedBy,
      latencyMs,
      circuitState: body.circuit?.state,
      ...(body.fallbackReason ? { fallbackReason: body.fallbackReason } : {}),
      ...(body.model ? { model: body.model } : {}),
    };
  } catch {
    return { status: 0, servedBy: 'dropped', latencyMs: performance.now() - sent };
  }
}

/** Clients join 2 ms apart, as real ones do, rather than all in one millisecond and in lock-step after it. */
const RAMP_UP_MS_PER_CLIENT = 2;

/** `total` requests from `concurrency` clients at once; `question(i)` picks request i's question, `outcomes[i]` its answer. */
export async function load(url: string, total: number, concurrency: number, question: (i: number) => string): Promise<LoadReport> {
  const outcomes: Outcome[] = new Array<Outcome>(total);
  let next = 0;
  const client = async (_: unknown, k: number) => {
    await new Promise((resolve) => setTimeout(resolve, k * RAMP_UP_MS_PER_CLIENT));
    while (next < total) {
      const i = next++;
      outcomes[i] = await ask(url, question(i));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  const latencies = outcomes.map((o) => o.latencyMs).sort((a, b) => a - b);
  const tally = (key: (o: Outcome) => string) =>
    outcomes.reduce<Record<string, number>>((counts, o) => ({ ...counts, [key(o)]: (counts[key(o)] ?? 0) + 1 }), {});
  return {
    requests: outcomes.length,
    statuses: tally((o) => String(o.status)),
    sources: tally((o) => o.servedBy),
    reasons: Object.fromEntries(Object.entries(tally((o) => o.fallbackReason ?? '')).filter(([reason]) => reason !== '')),
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies[latencies.length - 1] ?? Number.NaN,
    outcomes,
  };
}

/** Resident set size of a process, from /proc (Linux). */
export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  return kb ? Number(kb) * 1024 : Number.NaN;
}

/** The app's event-loop delay p99 since the previous scrape (prom-client resets its monitor on each scrape). */
export async function eventLoopDelayP99Ms(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = /^nodejs_eventloop_lag_p99_seconds(?:\{[^}]*\})? ([0-9.e+-]+)$/m.exec(text)?.[1];
  return value ? Number(value) * 1000 : Number.NaN;
}

export async function circuitState(url: string): Promise<string> {
  const body = (await (await fetch(`${url}/health/circuit-breaker`)).json()) as { details?: Record<string, { state?: string }> };
  return Object.values(body.details ?? {})[0]?.state ?? 'unknown';
}

/** Polls until `condition` holds; rejects after `timeoutMs`. */
export async function until(condition: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
