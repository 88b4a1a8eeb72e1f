import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from '../../src/logging/error-message.js';
import { type AppProcess, killAppProcesses, startAppProcess } from '../support/app-process.js';
import type { BreakerEntry, HealthBody } from '../support/http.js';
import { until } from '../support/load.js';
import { RedisTestServer } from '../support/redis-server.js';
import { UpstreamProcess } from './upstream-process.js';

// The contract's Fleet: replicas of the built app (three, a fourth joining mid-outage) behind a round-robin client,
// one real redis-server, the fake model in its own process, sharing ONE circuit. Where redis-server is not on PATH
// the chaos config skips this suite with a loud line, and fails the run under CI=true (test/support/redis-requirement.js).

const BREAKER = 'huggingface';
const THRESHOLD = 3;
const TIMEOUT_SECONDS = 1;
const RESET_MS = 2000;
/** Requests in flight at once, over the whole fleet. */
const CONCURRENCY = 4;
/** Trials are spaced on Redis' clock and stamped by the fake on arrival, on the same machine: only scheduling skews them. */
const SPACING_TOLERANCE_MS = 200;
/** With requests flowing, the trial follows the end of its period at once; a loaded 2-core machine may delay it this much. */
const TRIAL_LATENESS_MS = 1000;
/** The contract: an opening anywhere is obeyed everywhere within a second. */
const PROPAGATION_MS = 1000;
/** The bound for the fleet to close once the model is back (a request must come for the trial). */
const RECOVERY_MS = RESET_MS + 1000;
/** node-redis reconnects with its back-off capped at 2 s; then the replica rejoins on its next PING or call. */
const REJOIN_MS = 5000;
/** A replica without Redis counts THRESHOLD failures of its own: a few round-robin turns, on a loaded machine. */
const OWN_OPENING_MS = 5000;
/** Nobody waits for two time-outs, Redis dead or not (the chaos suite's bound). */
const MAX_WAIT_MS = 2 * TIMEOUT_SECONDS * 1000;
/** Leaves a newcomer's first questions a window before the fleet's next trial that they surely fall into. */
const MIN_WINDOW_MS = 300;
const POLL_MS = 25;
const HTTP_TIMEOUT_MS = 10_000;

type FleetEntry = BreakerEntry & { scope?: string };

interface Replica {
  name: string;
  app: AppProcess;
}

interface Question {
  text: string;
  /** The corpus has excerpts for it: with the model out it is still answered (200). */
  hasFallback: boolean;
}

/** One answer as the client saw it. */
interface Outcome {
  replica: string;
  question: Question;
  /** 0 when no answer came (a dropped connection, the client's time-out). */
  status: number;
  retryAfter: string | null;
  body: Record<string, unknown>;
  text: string;
  latencyMs: number;
  /** Epoch ms (this machine's clock, as Redis' and the fake's). */
  answeredAt: number;
}

/** Every question is new, so the answer cache never serves one and each either reaches the model or is refused. */
let asked = 0;
function nextQuestion(): Question {
  const i = asked++;
  return i % 4 === 3
    ? { text: `zqxv wplk qrst (${i})`, hasFallback: false }
    : { text: `How does the circuit breaker count consecutive failures? (${i})`, hasFallback: true };
}

async function ask(replica: Replica, question: Question = nextQuestion()): Promise<Outcome> {
  const sent = performance.now();
  try {
    const response = await fetch(`${replica.app.url}/assistant/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: question.text }),
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    const text = await response.text();
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // Not JSON: the violation check reports the raw text.
    }
    const answeredAt = Date.now();
    const latencyMs = performance.now() - sent;
    return {
      replica: replica.name,
      question,
      status: response.status,
      retryAfter: response.headers.get('retry-after'),
      body,
      text,
      latencyMs,
      answeredAt,
    };
  } catch (error) {
    const text = errorMessage(error);
    return {
      replica: replica.name,
      question,
      status: 0,
      retryAfter: null,
      body: {},
      text,
      latencyMs: performance.now() - sent,
      answeredAt: Date.now(),
    };
  }
}

/**
 * What an answer breaks of the contract, if anything: a 200 is the model's answer (only while it is well) or a
 * degraded fallback with its reason and retryAfterSeconds; otherwise a 503 with Retry-After, and only for a question
 * with nothing to fall back on. Never a 500, never a dropped connection.
 */
function violation(outcome: Outcome, modelMayAnswer: boolean): string | undefined {
  const { body, status } = outcome;
  const retryAfterSeconds = body['retryAfterSeconds'];
  const seconds = typeof retryAfterSeconds === 'number' && Number.isInteger(retryAfterSeconds) && retryAfterSeconds >= 1;
  if (status === 200 && body['source'] === 'llm' && body['degraded'] === false && modelMayAnswer) return undefined;
  const fallback = body['source'] === 'excerpts' || body['source'] === 'cache';
  if (status === 200 && fallback && body['degraded'] === true && typeof body['fallbackReason'] === 'string' && seconds) return undefined;
  if (status === 503 && !outcome.question.hasFallback && /^[1-9]\d*$/.test(outcome.retryAfter ?? '') && seconds) return undefined;
  return `${outcome.replica}, "${outcome.question.text}" → ${status} (Retry-After: ${outcome.retryAfter}) ${outcome.text.slice(0, 300)}`;
}

function violations(outcomes: Outcome[], modelMayAnswer = false): string[] {
  return outcomes.flatMap((outcome) => violation(outcome, modelMayAnswer) ?? []);
}

/** The newcomer's answer refused the model call: a fallback or a 503 saying the circuit is open. */
function refused(outcome: Outcome): boolean {
  const reason = outcome.status === 200 ? outcome.body['fallbackReason'] : outcome.body['reason'];
  return violation(outcome, false) === undefined && reason === 'circuit_open';
}

/** CONCURRENCY clients, each sending its next question to the next replica in turn, until stopped. */
class RoundRobinLoad {
  private readonly outcomes: Outcome[] = [];
  private running = true;
  private turn = 0;
  private readonly clients: Array<Promise<void>>;

  constructor(private readonly replicas: readonly Replica[]) {
    this.clients = Array.from({ length: CONCURRENCY }, () => this.client());
  }

  /** Waits for the requests in flight; every answer so far, in the order they came. */
  async stop(): Promise<Outcome[]> {
    this.running = false;
    await Promise.all(this.clients);
    return this.outcomes;
  }

  private async client(): Promise<void> {
    while (this.running) {
      const replica = this.replicas[this.turn++ % this.replicas.length];
      if (replica) this.outcomes.push(await ask(replica));
    }
  }
}

async function breakerOf(replica: Replica): Promise<FleetEntry> {
  const response = await fetch(`${replica.app.url}/health/circuit-breaker`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  const health = (await response.json()) as HealthBody;
  const entry = health.details[BREAKER];
  if (!entry) throw new Error(`${replica.name}: no "${BREAKER}" entry in ${JSON.stringify(health)}`);
  return entry as unknown as FleetEntry;
}

interface Seen {
  /** When the health answer that met the condition arrived (epoch ms): no earlier than the replica met it. */
  at: number;
  entry: FleetEntry;
}

/** Polls every replica's breaker until each has met `wanted` once; when each first did, and its entry then. */
async function untilEach(replicas: readonly Replica[], wanted: (entry: FleetEntry) => boolean, withinMs: number, what: string) {
  const deadline = Date.now() + withinMs;
  const seen = new Map<string, Seen>();
  const last = new Map<string, FleetEntry>();
  for (;;) {
    await Promise.all(
      replicas
        .filter((replica) => !seen.has(replica.name))
        .map(async (replica) => {
          const entry = await breakerOf(replica);
          last.set(replica.name, entry);
          if (wanted(entry)) seen.set(replica.name, { at: Date.now(), entry });
        }),
    );
    if (seen.size === replicas.length) return seen;
    if (Date.now() > deadline) {
      const missing = replicas.filter((replica) => !seen.has(replica.name)).map((replica) => [replica.name, last.get(replica.name)]);
      throw new Error(`within ${withinMs} ms not every replica ${what}; the others' last entries: ${JSON.stringify(missing)}`);
    }
    await sleep(POLL_MS);
  }
}

/** Every replica's breaker entry every POLL_MS until `end` (epoch ms): what the fleet reported over a window. */
async function sampleUntil(replicas: readonly Replica[], end: number): Promise<Array<{ replica: string; entry: FleetEntry }>> {
  const samples: Array<{ replica: string; entry: FleetEntry }> = [];
  while (Date.now() < end) {
    for (const [i, entry] of (await Promise.all(replicas.map(breakerOf))).entries())
      samples.push({ replica: replicas[i]?.name ?? '?', entry });
    await sleep(POLL_MS);
  }
  return samples;
}

function gapsBetween(times: number[]): number[] {
  return times.slice(1).map((time, i) => time - (times[i] ?? Number.NaN));
}

describe('chaos: one circuit for the whole fleet, shared through Redis', () => {
  let upstream: UpstreamProcess;
  let redis: RedisTestServer;
  const fleet: Replica[] = [];
  const loads = new Set<RoundRobinLoad>();

  const env = (): Record<string, string> => ({
    HF_ENDPOINT_URL: upstream.url,
    REDIS_URL: redis.url,
    CIRCUIT_BREAKER_SHARED: 'true',
    CIRCUIT_BREAKER_FAIL_THRESHOLD: String(THRESHOLD),
    CIRCUIT_BREAKER_TIMEOUT_SECONDS: String(TIMEOUT_SECONDS),
    CIRCUIT_BREAKER_RESET_TIMEOUT: String(RESET_MS / 1000),
    SHUTDOWN_DRAIN_SECONDS: '0',
  });

  async function startReplica(name: string): Promise<Replica> {
    return { name, app: await startAppProcess(env(), { output: 'discard' }) };
  }

  function startLoad(replicas: readonly Replica[]): RoundRobinLoad {
    const load = new RoundRobinLoad([...replicas]);
    loads.add(load);
    return load;
  }

  async function stopLoad(load: RoundRobinLoad): Promise<Outcome[]> {
    loads.delete(load);
    return load.stop();
  }

  beforeAll(async () => {
    [upstream, redis] = await Promise.all([UpstreamProcess.start(), RedisTestServer.start()]);
    fleet.push(...(await Promise.all(['replica 1', 'replica 2', 'replica 3'].map(startReplica))));
  });

  afterEach(async () => {
    // A failed test leaves its load running: the next one starts from quiet replicas.
    await Promise.all([...loads].map(stopLoad));
  });

  afterAll(async () => {
    await killAppProcesses();
    await redis?.stop();
    await upstream?.stop();
  });

  it('shares one closed circuit across the replicas while the model answers', async () => {
    for (const replica of fleet) {
      const outcome = await ask(replica, { text: `How does the answer cache work? (${asked++})`, hasFallback: true });
      expect(outcome.body).toMatchObject({ source: 'llm', degraded: false });
    }
    for (const replica of fleet) expect(await breakerOf(replica)).toMatchObject({ state: 'closed', scope: 'fleet', failures: 0 });
  });

  it(`opens every replica after at most threshold + concurrency (${THRESHOLD + CONCURRENCY}) model calls, answering each request from the fallbacks or with a 503`, async () => {
    const outageBegan = Date.now();
    await upstream.setFault({ kind: 'error500' });
    const load = startLoad(fleet);
    const opened = await untilEach(fleet, (entry) => entry.state === 'open', OWN_OPENING_MS, 'reported the circuit open');
    const outcomes = await stopLoad(load);

    const seen = [...opened.values()];
    // Obeyed everywhere within a second of the first replica that was seen open.
    expect(Math.max(...seen.map((s) => s.at)) - Math.min(...seen.map((s) => s.at))).toBeLessThanOrEqual(PROPAGATION_MS);
    // The trial time of the first open period: before it, every call was a failure counted toward opening.
    const firstTrialAt = Math.min(...seen.map((s) => Date.parse(s.entry.nextAttemptAt ?? '')));
    expect(Number.isFinite(firstTrialAt)).toBe(true);
    const beforeTrial = (await upstream.callTimes(outageBegan)).filter((time) => time < firstTrialAt);
    expect(beforeTrial.length).toBeGreaterThanOrEqual(THRESHOLD);
    // One circuit: not THRESHOLD per replica (3 × 3); at most the calls already under way when it opened add up.
    expect(beforeTrial.length).toBeLessThanOrEqual(THRESHOLD + CONCURRENCY);
    expect(violations(outcomes)).toEqual([]);
    for (const { entry } of seen) expect(entry.scope).toBe('fleet');
  });

  it('lets exactly one half-open trial per reset period reach the model over three periods of round-robin load, every replica reporting scope fleet', async () => {
    const windowStart = Date.now();
    const load = startLoad(fleet);
    const samples = await sampleUntil(fleet, windowStart + 3.5 * RESET_MS);
    const outcomes = await stopLoad(load);
    const windowEnd = Date.now();

    const trials = await upstream.callTimes(windowStart);
    const gaps = gapsBetween(trials);
    // A trial in each period: none skipped, none late past the period plus scheduling.
    expect(trials.length).toBeGreaterThanOrEqual(3);
    expect((trials[0] ?? Number.POSITIVE_INFINITY) - windowStart).toBeLessThanOrEqual(RESET_MS + TRIAL_LATENESS_MS);
    expect(gaps.filter((gap) => gap > RESET_MS + TRIAL_LATENESS_MS)).toEqual([]);
    expect(windowEnd - (trials.at(-1) ?? Number.NEGATIVE_INFINITY)).toBeLessThanOrEqual(RESET_MS + TRIAL_LATENESS_MS);
    // Never a second one in a period, whichever replica the requests reach.
    expect(gaps.filter((gap) => gap < RESET_MS - SPACING_TOLERANCE_MS)).toEqual([]);
    expect(trials.length).toBeLessThanOrEqual(Math.floor((windowEnd - windowStart) / (RESET_MS - SPACING_TOLERANCE_MS)) + 1);

    expect(samples.length).toBeGreaterThan(0);
    expect(samples.filter(({ entry }) => entry.scope !== 'fleet' || entry.state === 'closed')).toEqual([]);
    expect(violations(outcomes)).toEqual([]);
    expect(outcomes.filter((outcome) => outcome.status === 200).length).toBeGreaterThan(0);
  });

  it('starts a fourth replica mid-outage that refuses from its first request: no model call before the fleet’s next trial', async () => {
    const load = startLoad(fleet);
    // Start it just after a trial, so its start-up eats as little of the next period as it can.
    const since = Date.now();
    await until(async () => (await upstream.callTimes(since)).length > 0, RESET_MS + TRIAL_LATENESS_MS, 'a trial');
    const newcomer = await startReplica('replica 4');

    // Before it has answered any question: the fleet's open circuit, with time left before the trial for its first answers.
    let entry = await breakerOf(newcomer);
    const deadline = Date.now() + 2 * RESET_MS + TRIAL_LATENESS_MS;
    while (entry.state !== 'closed' && !(entry.state === 'open' && Date.parse(entry.nextAttemptAt ?? '') - Date.now() >= MIN_WINDOW_MS)) {
      if (Date.now() > deadline)
        throw new Error(`replica 4 never reported the fleet's circuit open ahead of a trial: ${JSON.stringify(entry)}`);
      await sleep(POLL_MS);
      entry = await breakerOf(newcomer);
    }
    const checkedAt = Date.now();
    expect(entry).toMatchObject({ state: 'open', scope: 'fleet' });
    const nextTrialAt = Date.parse(entry.nextAttemptAt ?? '');

    const firstAnswers: Outcome[] = [];
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (Date.now() < nextTrialAt) firstAnswers.push(await ask(newcomer));
      }),
    );
    const outcomes = await stopLoad(load);
    fleet.push(newcomer);

    const answeredBeforeTrial = firstAnswers.filter((outcome) => outcome.answeredAt < nextTrialAt);
    expect(answeredBeforeTrial.length).toBeGreaterThan(0);
    expect(answeredBeforeTrial.filter((outcome) => !refused(outcome)).map((outcome) => violation(outcome, false) ?? outcome.text)).toEqual(
      [],
    );
    // Nobody, the newcomer least of all, called the model before the fleet's trial time.
    expect((await upstream.callTimes(checkedAt)).filter((time) => time < nextTrialAt)).toEqual([]);
    expect(violations([...outcomes, ...firstAnswers])).toEqual([]);
  });

  it(`closes all four replicas within one reset period and a second (${RECOVERY_MS} ms) once the model is back`, async () => {
    expect(fleet.map((replica) => replica.name)).toEqual(['replica 1', 'replica 2', 'replica 3', 'replica 4']);
    const load = startLoad(fleet);
    await upstream.setFault({ kind: 'ok' });
    const back = Date.now();
    // The deadline leaves room to measure a late close rather than only time out on it.
    const closed = await untilEach(fleet, (entry) => entry.state === 'closed', 3 * RECOVERY_MS, 'reported the circuit closed');
    const outcomes = await stopLoad(load);

    const closedAfter = Object.fromEntries([...closed].map(([name, seen]) => [name, seen.at - back]));
    expect(Object.entries(closedAfter).filter(([, ms]) => ms > RECOVERY_MS)).toEqual([]);
    for (const seen of closed.values()) expect(seen.entry.scope).toBe('fleet');
    expect(violations(outcomes, true)).toEqual([]);
    expect(outcomes.some((outcome) => outcome.body['source'] === 'llm')).toBe(true);
  });

  it('keeps answering with Redis killed mid-outage, each replica opening on its own, and shares one circuit again once Redis is back', async () => {
    await upstream.setFault({ kind: 'error500' });
    await redis.kill();
    const load = startLoad(fleet);
    await untilEach(
      fleet,
      (entry) => entry.scope === 'replica' && entry.state === 'open',
      OWN_OPENING_MS,
      'opened a circuit of its own (scope replica)',
    );

    await redis.restart();
    await untilEach(fleet, (entry) => entry.scope === 'fleet', REJOIN_MS, 'rejoined the fleet (scope fleet) after Redis returned');
    const rejoinedAt = Date.now();
    // The replicas' own open circuits re-open the fleet's: one circuit again, never closed, one trial a period.
    const samples = await sampleUntil(fleet, rejoinedAt + 2 * RESET_MS + TRIAL_LATENESS_MS);
    const outcomes = await stopLoad(load);

    expect(violations(outcomes)).toEqual([]);
    expect(
      outcomes.filter((outcome) => outcome.latencyMs >= MAX_WAIT_MS).map((outcome) => `${outcome.replica}: ${outcome.latencyMs} ms`),
    ).toEqual([]);
    expect(samples.filter(({ entry }) => entry.scope !== 'fleet' || entry.state === 'closed')).toEqual([]);
    const trials = await upstream.callTimes(rejoinedAt);
    expect(trials.length).toBeGreaterThanOrEqual(1);
    expect(gapsBetween(trials).filter((gap) => gap < RESET_MS - SPACING_TOLERANCE_MS)).toEqual([]);
  });
});
