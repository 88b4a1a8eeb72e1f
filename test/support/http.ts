// What a client of the service sees: status, headers and the parsed JSON body of real HTTP requests.
import { setTimeout as sleep } from 'node:timers/promises';

export interface HttpResult<T = unknown> {
  status: number;
  headers: Headers;
  /** The raw text as it came over the wire, for searching it (e.g. for a secret). */
  text: string;
  /** The body parsed as JSON; undefined when it is not JSON. */
  body: T;
}

export interface Excerpt {
  documentId: string;
  title: string;
  text: string;
  score: number;
}

export interface CircuitStatus {
  name: string;
  state: 'closed' | 'open' | 'half_open';
}

export interface AnswerBody {
  answer: string;
  source: 'llm' | 'cache' | 'excerpts';
  degraded: boolean;
  fallbackReason: null | 'circuit_open' | 'upstream_error' | 'timeout' | 'rate_limited' | 'overloaded' | 'upstream_unconfigured';
  excerpts: Excerpt[];
  circuit: CircuitStatus;
  cachedAt?: string;
  retryAfterSeconds?: number;
}

export interface UnavailableBody {
  statusCode: 503;
  error: 'Service Unavailable';
  message: string;
  reason: string;
  retryAfterSeconds: number;
  circuit: CircuitStatus;
}

export interface ErrorBody {
  statusCode: number;
  message: string | string[];
  error?: string;
}

export interface BreakerEntry {
  status: 'up' | 'down';
  state: CircuitStatus['state'];
  failures: number;
  openedAt?: string;
  nextAttemptAt?: string;
  /** Calls (streams included, until they end) holding a bulkhead slot now. */
  inFlight: number;
  stats: { successes: number; failures: number; timeouts: number; rejects: number; fallbacks: number };
}

export interface HealthBody {
  status: 'ok' | 'error';
  info: Record<string, Record<string, unknown>>;
  error: Record<string, Record<string, unknown>>;
  details: Record<string, Record<string, unknown>>;
}

async function toResult<T>(response: Response): Promise<HttpResult<T>> {
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text) as unknown;
  } catch {
    body = undefined;
  }
  return { status: response.status, headers: response.headers, text, body: body as T };
}

/** POST /assistant/query with `body` serialised as JSON. */
export async function ask<T = AnswerBody>(baseUrl: string, body: unknown): Promise<HttpResult<T>> {
  return postRaw<T>(baseUrl, JSON.stringify(body), 'application/json');
}

/** POST /assistant/query with exactly these bytes and this content-type (none when undefined). */
export async function postRaw<T = ErrorBody>(
  baseUrl: string,
  raw: string | undefined,
  contentType: string | undefined,
): Promise<HttpResult<T>> {
  const response = await fetch(`${baseUrl}/assistant/query`, {
    method: 'POST',
    headers: contentType === undefined ? {} : { 'content-type': contentType },
    body: raw,
  });
  return toResult<T>(response);
}

export async function getHealth(baseUrl: string, path: '' | '/live' | '/ready' | '/circuit-breaker'): Promise<HttpResult<HealthBody>> {
  return toResult<HealthBody>(await fetch(`${baseUrl}/health${path}`));
}

/** The headers as one searchable string, `name: value` a line. */
export function headerText(headers: Headers): string {
  return [...headers].map(([name, value]) => `${name}: ${value}`).join('\n');
}

/**
 * Asks `probe` until it returns a value `done` accepts; for states the app reaches on its own clock (the
 * half-open transition), so a test waits for the state rather than for a guessed number of milliseconds.
 */
export async function eventually<T>(probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`condition not reached within ${timeoutMs} ms; last value: ${JSON.stringify(value)}`);
    await sleep(25);
  }
}

/** Rejects when `promise` takes longer than `ms`, naming `what` in the error. */
export function withinMs<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A breaker's entry in a Terminus body (keyed by the breaker's name), if there is one. */
export function breakerEntry(health: HealthBody, name: string): BreakerEntry | undefined {
  return health.details[name] as unknown as BreakerEntry | undefined;
}

/** The breaker's entry as /health/circuit-breaker reports it, once its state is `state`. */
export async function waitForBreakerState(baseUrl: string, name: string, state: CircuitStatus['state']): Promise<BreakerEntry> {
  const health = await eventually(
    () => getHealth(baseUrl, '/circuit-breaker'),
    (result) => breakerEntry(result.body, name)?.state === state,
  );
  return breakerEntry(health.body, name) as BreakerEntry;
}
