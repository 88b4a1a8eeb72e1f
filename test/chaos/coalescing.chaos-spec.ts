import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { markdownTable } from '../../bench/stats.js';
import { errorMessage } from '../../src/logging/error-message.js';
import { type AppProcess, startAppProcess } from '../support/app-process.js';
import type { Fault } from '../support/fake-hf-upstream.js';
import { RedisTestServer } from '../support/redis-server.js';
import { UpstreamProcess } from './upstream-process.js';

// A thundering herd on a fleet (the contract's Coalescing): 200 clients at once, 20 distinct questions, three replicas
// of the built app on one real redis-server, the fake model in its own process answering slowly. Each question costs
// one model call for the fleet, plus one for each replica whose wait for another's answer ran out; nobody gets a 500.

const REPLICAS = 3;
const CLIENTS = 200;
const QUESTIONS = 20;
/** The model takes this long: the whole herd arrives while the first calls are in flight. */
const LATENCY_MS = 1500;
const JITTER_MS = 500;
const HTTP_TIMEOUT_MS = 30_000;
const WAIT_TIMEOUTS = /^assistant_coalesce_wait_timeouts_total (\d+)$/m;

interface Herd {
  statuses: Map<number, number>;
  coalesced: number;
  modelCalls: number;
  /** Replicas whose wait for another replica's answer ran out at least once during the herd. */
  replicasTimedOut: number;
  slowestMs: number;
}

describe('chaos: a thundering herd of identical questions on a fleet', () => {
  let upstream: UpstreamProcess;
  let redis: RedisTestServer;
  const replicas: AppProcess[] = [];
  const rows: string[][] = [];
  let round = 0;

  beforeAll(async () => {
    upstream = await UpstreamProcess.start();
    redis = await RedisTestServer.start();
    const env = {
      HF_ENDPOINT_URL: upstream.url,
      REDIS_URL: redis.url,
      CIRCUIT_BREAKER_TIMEOUT_SECONDS: '5',
      ASSISTANT_DEADLINE_SECONDS: '5',
      CIRCUIT_BREAKER_FAIL_THRESHOLD: '5',
      CIRCUIT_BREAKER_RESET_TIMEOUT: '1',
      ASSISTANT_COALESCE: 'true',
      CACHE_COALESCE_WAIT_SECONDS: '5',
      SHUTDOWN_DRAIN_SECONDS: '0',
      LOG_LEVEL: 'silent',
    };
    for (let i = 0; i < REPLICAS; i++) replicas.push(await startAppProcess(env, { output: 'discard' }));
  });

  afterAll(async () => {
    await Promise.all(replicas.map((replica) => replica.kill('SIGKILL')));
    await redis?.stop();
    await upstream?.stop();
    if (rows.length > 0)
      process.stdout.write(
        `\nCoalescing chaos\n${markdownTable(['scenario', 'answers', 'coalesced', 'model calls', 'replicas timed out', 'slowest'], rows)}\n`,
      );
  });

  async function waitTimeouts(): Promise<number[]> {
    return Promise.all(
      replicas.map(async (replica) => Number(WAIT_TIMEOUTS.exec(await (await fetch(`${replica.url}/metrics`)).text())?.[1] ?? 0)),
    );
  }

  async function herd(scenario: string, fault: Fault): Promise<Herd> {
    round++;
    await upstream.setFault(fault);
    const callsBefore = await upstream.calls();
    const timeoutsBefore = await waitTimeouts();
    const started = performance.now();
    const outcomes = await Promise.all(
      Array.from({ length: CLIENTS }, async (_, i) => {
        const replica = replicas[Math.floor(Math.random() * REPLICAS)];
        try {
          const response = await fetch(`${replica.url}/assistant/query`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({
              query: `How does the circuit breaker count consecutive failures? (herd ${round}, question ${i % QUESTIONS})`,
            }),
            signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
          });
          const body = (await response.json()) as { coalesced?: boolean };
          return { status: response.status, coalesced: body.coalesced === true };
        } catch (error) {
          return { status: 0, coalesced: false, error: errorMessage(error) };
        }
      }),
    );
    const slowestMs = performance.now() - started;
    const timeoutsAfter = await waitTimeouts();
    const statuses = new Map<number, number>();
    for (const { status } of outcomes) statuses.set(status, (statuses.get(status) ?? 0) + 1);
    const result: Herd = {
      statuses,
      coalesced: outcomes.filter((outcome) => outcome.coalesced).length,
      modelCalls: (await upstream.calls()) - callsBefore,
      replicasTimedOut: timeoutsAfter.filter((count, i) => count > timeoutsBefore[i]).length,
      slowestMs,
    };
    rows.push([
      scenario,
      [...statuses].map(([status, count]) => `${count} × ${status}`).join(', '),
      String(result.coalesced),
      String(result.modelCalls),
      String(result.replicasTimedOut),
      `${Math.round(slowestMs)} ms`,
    ]);
    return result;
  }

  it('a slow, healthy model: each question at most one call per replica that timed out waiting, plus one; every answer a 200', async () => {
    const result = await herd('slow healthy model', { kind: 'ok', latencyMs: LATENCY_MS, jitterMs: JITTER_MS });
    expect(result.statuses.get(200)).toBe(CLIENTS);
    expect(result.modelCalls).toBeLessThanOrEqual(QUESTIONS * (1 + result.replicasTimedOut));
    expect(result.coalesced).toBeGreaterThanOrEqual(CLIENTS - result.modelCalls);
  });

  it('a slowly failing model: the same bound on model calls, the fallbacks for everyone, never a 500', async () => {
    const result = await herd('slowly failing model', { kind: 'error500', latencyMs: LATENCY_MS, jitterMs: JITTER_MS });
    expect(result.statuses.get(500)).toBeUndefined();
    expect(result.statuses.get(200)).toBe(CLIENTS);
    expect(result.modelCalls).toBeLessThanOrEqual(QUESTIONS * (1 + result.replicasTimedOut));
  });
});
