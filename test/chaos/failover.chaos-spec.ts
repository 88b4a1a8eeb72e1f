import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { fixed, markdownTable } from '../../bench/stats.js';
import { startAppProcess, type AppProcess } from '../support/app-process.js';
import type { Fault } from '../support/fake-hf-upstream.js';
import { RedisTestServer } from '../support/redis-server.js';
import { ask, load, type LoadReport, until } from '../support/load.js';
import { UpstreamProcess } from './upstream-process.js';

// Two model targets (A, then B on an endpoint of its own) in front of the real app process under load: A flaps and
// then dies while B serves. Every request gets a real answer from one of them, none a 500, none waits past the deadline.

const TIMEOUT_MS = 1000;
const RESET_MS = 800;
const DEADLINE_MS = 2000;
const THRESHOLD = 5;
const CLIENTS = 50;
/** Scheduling on a shared 2-core machine, on top of the deadline. */
const SLACK_MS = 1000;
const MODEL_A = 'chaos/model-a';
const MODEL_B = 'chaos/model-b';

interface Row {
  scenario: string;
  report: LoadReport;
  callsA: number;
  callsB: number;
}

describe('chaos: failover across two model targets', () => {
  let a: UpstreamProcess;
  let b: UpstreamProcess;
  let redis: RedisTestServer;
  let app: AppProcess;
  const rows: Row[] = [];
  let round = 0;

  beforeAll(async () => {
    [a, b, redis] = await Promise.all([UpstreamProcess.start(), UpstreamProcess.start(), RedisTestServer.start()]);
    app = await startAppProcess(
      {
        HF_ENDPOINT_URL: a.url,
        HF_MODEL: MODEL_A,
        HF_FALLBACK_MODELS: `${MODEL_B}@${b.url}`,
        REDIS_URL: redis.url,
        CIRCUIT_BREAKER_FAIL_THRESHOLD: String(THRESHOLD),
        CIRCUIT_BREAKER_TIMEOUT_SECONDS: String(TIMEOUT_MS / 1000),
        CIRCUIT_BREAKER_RESET_TIMEOUT: String(RESET_MS / 1000),
        ASSISTANT_DEADLINE_SECONDS: String(DEADLINE_MS / 1000),
        SHUTDOWN_DRAIN_SECONDS: '0',
      },
      { output: 'discard' },
    );
    await load(app.url, 300, CLIENTS, (i) => `warm-up question ${i}`);
  });

  afterAll(async () => {
    await app?.kill('SIGKILL');
    await Promise.all([a?.stop(), b?.stop(), redis?.stop()]);
    const table = markdownTable(
      ['scenario', 'requests', 'statuses', 'answers', 'by model', 'p50 ms', 'p99 ms', 'max ms', 'calls A', 'calls B'],
      rows.map((r) => [
        r.scenario,
        r.report.requests,
        JSON.stringify(r.report.statuses),
        JSON.stringify(r.report.sources),
        JSON.stringify(byModel(r.report)),
        fixed(r.report.p50Ms, 1),
        fixed(r.report.p99Ms, 1),
        fixed(r.report.maxMs, 1),
        r.callsA,
        r.callsB,
      ]),
    );
    process.stdout.write(`\nFailover chaos (time-out ${TIMEOUT_MS} ms, reset ${RESET_MS} ms, deadline ${DEADLINE_MS} ms)\n${table}\n`);
  });

  function byModel(report: LoadReport): Record<string, number> {
    return report.outcomes.reduce<Record<string, number>>((counts, { model }) => {
      const key = model ?? 'none';
      return { ...counts, [key]: (counts[key] ?? 0) + 1 };
    }, {});
  }

  /** 1500 new questions (none cached) while A does `fault` and B answers. */
  async function run(scenario: string, fault: Fault): Promise<LoadReport> {
    round++;
    const [callsA, callsB] = [await a.calls(), await b.calls()];
    await a.setFault(fault);
    const report = await load(app.url, 1500, CLIENTS, (i) => `How does the breaker count failures? (${round}.${i})`);
    rows.push({ scenario, report, callsA: (await a.calls()) - callsA, callsB: (await b.calls()) - callsB });
    // Every answer came from a model, A or B: no 500, no 503, no fallback while B is well.
    expect(report.statuses).toEqual({ '200': 1500 });
    expect(report.sources).toEqual({ llm: 1500 });
    expect(report.maxMs).toBeLessThan(DEADLINE_MS + SLACK_MS);
    return report;
  }

  it('answers every request from A or B while A fails every other call', async () => {
    const report = await run('A flapping (every 2nd fails)', { kind: 'flapping', every: 2 });
    expect(byModel(report)[MODEL_A]).toBeGreaterThan(0);
    expect(byModel(report)[MODEL_B]).toBeGreaterThan(0);
  });

  it.each<[string, Fault]>([
    ['A dies (HTTP 500)', { kind: 'error500' }],
    ['A hangs', { kind: 'hang' }],
  ])('keeps answering from B when %s, asking A only for its trials once open, and returns to A when it heals', async (scenario, fault) => {
    const started = Date.now();
    const report = await run(scenario, fault);
    expect(byModel(report)[MODEL_B]).toBeGreaterThan(1000);
    // Open after the threshold (plus the calls already in flight), then one trial per reset period.
    const callsA = rows.at(-1)!.callsA;
    expect(callsA).toBeLessThanOrEqual(THRESHOLD + CLIENTS + Math.ceil((Date.now() - started) / RESET_MS) + 1);
    await a.setFault({ kind: 'ok' });
    let i = 0;
    await until(
      async () => (await ask(app.url, `Is A back? (${round}.${i++})`)).model === MODEL_A,
      RESET_MS + TIMEOUT_MS + SLACK_MS,
      'an answer from A again',
    );
  });
});
