import { createConnection } from 'node:net';
import { FakeHfUpstream } from '../test/support/fake-hf-upstream.js';
import { startAppProcess, type AppProcess } from '../test/support/app-process.js';
import { pinCpus } from '../test/support/cpu-affinity.js';
import { RedisTestServer } from '../test/support/redis-server.js';
import { cpuSeconds, pinEveryThread } from './access.bench.js';
import { appEnv, CONNECTIONS, KNOWN_QUESTION, measure, type Load } from './http.bench.js';
import {
  alternateInPairs,
  type Pair,
  PAIRED_COLUMNS,
  pairedCells,
  PairedSamples,
  type PairedScenarioResult,
  type RunSample,
} from './paired-rounds.js';
import { fixed, markdownTable, median } from './stats.js';

// What sharing the circuit through Redis (CIRCUIT_BREAKER_SHARED=true) costs a healthy model call, as a ratio to the
// same app with a circuit of its own (CIRCUIT_BREAKER_SHARED=false). Every app has the same REDIS_URL (one
// redis-server, which also holds the answer cache) and the same fake upstream, healthy and answering at once. Every
// request asks a question nobody asked before, so the answer cache misses and each one goes to the model: the path
// the shared circuit sits on. Measured as access.bench does: each compared app next to a baseline app of its own, in
// alternating rounds, the ratio the median over the rounds; a control pair (local against local) shows the noise.

const ROUNDS = 16;
const ROUND_SECONDS = 1;
const WARMUP_SECONDS = 1;
/**
 * After each run: the requests in flight when the load generator stopped (up to CONNECTIONS, ~100 ms of the app's
 * CPU on the model path) finish before the next run starts, instead of taking CPU 0 from the next app measured.
 */
const SETTLE_MS = 200;
const MIN_RATIO = 0.9;
/** Sequential model-path requests per app while Redis' MONITOR counts the commands they cause. */
const MONITORED_REQUESTS = 200;
/** After the last monitored answer: a write the app makes after answering still lands in the window. */
const MONITOR_SETTLE_MS = 300;
/** Every app idle: what Redis receives anyway, so the counts per request can be read net of it. */
const IDLE_SETTLE_MS = 1000;
const IDLE_SECONDS = 1;
const BREAKER_NAME = 'huggingface';
const JSON_HEADERS = { 'content-type': 'application/json' };

interface Configuration {
  name: string;
  /** The configuration this one is a ratio to; none for a baseline. */
  baseline?: string;
  /** CIRCUIT_BREAKER_SHARED. */
  shared: boolean;
  /** A control: the same configuration as its baseline in another process, so its ratio is the method's noise. */
  control?: boolean;
}

const LOCAL = 'model path, circuit per replica (CIRCUIT_BREAKER_SHARED=false)';

const CONFIGURATIONS: Configuration[] = [
  { name: LOCAL, shared: false },
  { name: 'control: the same, in a second app', baseline: LOCAL, shared: false, control: true },
  { name: 'model path, circuit shared in Redis (CIRCUIT_BREAKER_SHARED=true)', baseline: LOCAL, shared: true },
];

/** Commands Redis received while one app answered MONITORED_REQUESTS new questions one after another. */
export interface RedisCommandCount {
  requests: number;
  /** Commands sent by clients (PING aside), per request. */
  perRequest: number;
  /** The same by command name (upper case), per request. */
  byCommand: Record<string, number>;
  /** Commands run inside Lua scripts (EVAL / EVALSHA), per request: no round trips of their own. */
  inLuaPerRequest: number;
  inLuaByCommand: Record<string, number>;
}

export interface FleetScenarioResult extends PairedScenarioResult {
  shared: boolean;
  /** Model calls the upstream counted per answered request, median over the runs: 1.00 when every request missed the cache. */
  modelCallsPerAnswer: number;
  /** The circuit's scope the app reports on GET /health/circuit-breaker ('fleet' shared, 'replica' not). */
  scope: string;
  /** The answer's source, checked once after the rounds. */
  served: string;
  redis: RedisCommandCount;
}

export interface FleetBenchResult {
  rounds: number;
  roundSeconds: number;
  scenarios: FleetScenarioResult[];
  /** Commands Redis received while every app stood idle (PING aside): background, not requests. */
  idle: IdleCommands;
  pinning: string;
}

/** One configuration's samples over the rounds, with the model calls each answer cost. */
class Samples extends PairedSamples {
  readonly modelCallsPerAnswer: number[] = [];
}

async function ask(app: AppProcess, query: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${app.url}/assistant/query`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ query }) });
  const body = (await response.json()) as Record<string, unknown>;
  if (response.status !== 200) throw new Error(`${app.url}: ${response.status} ${JSON.stringify(body)}`);
  return body;
}

/** The scope the app's breaker reports: what proves CIRCUIT_BREAKER_SHARED took effect. */
async function circuitScope(app: AppProcess): Promise<string> {
  const response = await fetch(`${app.url}/health/circuit-breaker`);
  const body = (await response.json()) as { details?: Record<string, { scope?: unknown; state?: unknown }> };
  const entry = body.details?.[BREAKER_NAME];
  if (entry?.state !== 'closed') throw new Error(`${app.url}: breaker ${BREAKER_NAME} is ${String(entry?.state)}, not closed`);
  return String(entry.scope);
}

/**
 * Redis' MONITOR on a connection of its own (node-redis 4 has no monitor()): every command any client sends, and
 * every command a Lua script runs (client "lua"), until stop().
 */
class RedisMonitor {
  private readonly lines: string[] = [];
  private pending = '';

  private constructor(private readonly socket: ReturnType<typeof createConnection>) {}

  static async start(port: number): Promise<RedisMonitor> {
    const socket = createConnection({ host: '127.0.0.1', port });
    const monitor = new RedisMonitor(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.on('data', (chunk: Buffer) => {
        monitor.pending += chunk.toString('utf8');
        const lines = monitor.pending.split('\r\n');
        monitor.pending = lines.pop() ?? '';
        for (const line of lines) {
          if (line === '+OK') resolve();
          else if (line.startsWith('-')) reject(new Error(`MONITOR: ${line}`));
          else monitor.lines.push(line);
        }
      });
      socket.write('MONITOR\r\n');
    });
    return monitor;
  }

  /** Stops monitoring; the commands seen, as client ('lua' inside a script) and command name (upper case). */
  async stop(): Promise<Array<{ client: string; command: string }>> {
    await new Promise<void>((resolve) => this.socket.end(resolve));
    this.socket.destroy();
    return this.lines.flatMap((line) => {
      // +1700000000.123456 [0 127.0.0.1:54321] "GET" "assistant:answer:v2:..."
      const match = /^\+\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]+)"/.exec(line);
      return match ? [{ client: match[1], command: match[2].toUpperCase() }] : [];
    });
  }
}

function perRequest(commands: string[], requests: number): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const command of commands) counts[command] = (counts[command] ?? 0) + 1;
  return Object.fromEntries(
    Object.entries(counts)
      .sort(([, a], [, b]) => b - a)
      .map(([command, count]) => [command, count / requests]),
  );
}

/** MONITORED_REQUESTS new questions, one at a time, on `app` alone: the Redis commands they cause, per request. */
async function countRedisCommands(redis: RedisTestServer, app: AppProcess, label: string): Promise<RedisCommandCount> {
  const monitor = await RedisMonitor.start(redis.port);
  for (let i = 0; i < MONITORED_REQUESTS; i++) {
    const body = await ask(app, `${KNOWN_QUESTION} monitored ${label} #${i}`);
    if (body['source'] !== 'llm') throw new Error(`${label}: a monitored question was answered from ${String(body['source'])}`);
  }
  await new Promise((resolve) => setTimeout(resolve, MONITOR_SETTLE_MS));
  const seen = (await monitor.stop()).filter((c) => c.command !== 'PING');
  const fromClients = seen.filter((c) => c.client !== 'lua').map((c) => c.command);
  const inLua = seen.filter((c) => c.client === 'lua').map((c) => c.command);
  return {
    requests: MONITORED_REQUESTS,
    perRequest: fromClients.length / MONITORED_REQUESTS,
    byCommand: perRequest(fromClients, MONITORED_REQUESTS),
    inLuaPerRequest: inLua.length / MONITORED_REQUESTS,
    inLuaByCommand: perRequest(inLua, MONITORED_REQUESTS),
  };
}

/** Background: what Redis receives while no request arrives (PING aside), per second and by command. */
export interface IdleCommands {
  perSecond: number;
  byCommand: Record<string, number>;
}

/** After IDLE_SETTLE_MS (requests still in flight when the load generator stopped finish meanwhile), for IDLE_SECONDS. */
async function idleCommands(redis: RedisTestServer): Promise<IdleCommands> {
  await new Promise((resolve) => setTimeout(resolve, IDLE_SETTLE_MS));
  const monitor = await RedisMonitor.start(redis.port);
  await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
  const seen = (await monitor.stop()).filter((c) => c.command !== 'PING' && c.client !== 'lua').map((c) => c.command);
  return { perSecond: seen.length / IDLE_SECONDS, byCommand: perRequest(seen, IDLE_SECONDS) };
}

export async function runFleetBench(): Promise<FleetBenchResult> {
  const upstream = await FakeHfUpstream.start();
  const redis = await RedisTestServer.start();
  const apps: AppProcess[] = [];
  let pinning = '';
  const start = async (configuration: Configuration): Promise<AppProcess> => {
    const env = appEnv(upstream, { REDIS_URL: redis.url, CIRCUIT_BREAKER_SHARED: String(configuration.shared) });
    const app = await startAppProcess(env, { output: 'discard' });
    apps.push(app);
    pinning = pinEveryThread(pinCpus(app.process.pid ?? 0, [process.pid]), app);
    const expected = configuration.shared ? 'fleet' : 'replica';
    const scope = await circuitScope(app);
    if (scope !== expected)
      throw new Error(`${configuration.name}: the circuit's scope is ${scope}, not ${expected} (is CIRCUIT_BREAKER_SHARED implemented?)`);
    return app;
  };
  try {
    // Every compared configuration has a baseline app of its own, so both apps of a pair run exactly as often.
    const byName = new Map(CONFIGURATIONS.map((c) => [c.name, c]));
    const pairs: Array<Pair<Configuration, AppProcess>> = [];
    for (const compared of CONFIGURATIONS.filter((c) => c.baseline !== undefined)) {
      const baseline = byName.get(compared.baseline!)!;
      pairs.push({ baseline, baselineApp: await start(baseline), compared, comparedApp: await start(compared) });
    }
    const samples = new Map(CONFIGURATIONS.map((c) => [c.name, new Samples()]));
    // Each run asks its own questions (a run number in each, then the request's), so no answer is ever in the cache:
    // not from an earlier run of the same app, nor from another app through the Redis they share.
    let runs = 0;
    const run = async (configuration: Configuration, app: AppProcess, seconds: number, warmUp = false): Promise<RunSample> => {
      const load: Load = {
        method: 'POST',
        path: '/assistant/query',
        body: JSON.stringify({ query: `${KNOWN_QUESTION} fleet run ${runs++}` }),
        uniqueBodies: true,
      };
      const cpuBefore = cpuSeconds(app.process.pid);
      const callsBefore = upstream.calls;
      const result = await measure(app, load, seconds);
      // Above 1 by the requests the app had already passed to the model when the load generator stopped waiting.
      const modelCallsPerAnswer = (upstream.calls - callsBefore) / result['2xx'];
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      const cpuUsPerRequest = ((cpuSeconds(app.process.pid) - cpuBefore) * 1e6) / result.requests.total;
      if (warmUp) return { result, cpuUsPerRequest };
      const sample = samples.get(configuration.name)!;
      sample.record(result, cpuUsPerRequest);
      sample.modelCallsPerAnswer.push(modelCallsPerAnswer);
      return { result, cpuUsPerRequest };
    };
    await alternateInPairs(
      pairs,
      { rounds: ROUNDS, roundSeconds: ROUND_SECONDS, warmUpSeconds: WARMUP_SECONDS },
      run,
      (compared, ratio, cpuRatio) => samples.get(compared.name)!.recordRatio(ratio, cpuRatio),
    );

    const idle = await idleCommands(redis);
    const scenarios: FleetScenarioResult[] = [];
    for (const [index, configuration] of CONFIGURATIONS.entries()) {
      const sample = samples.get(configuration.name)!;
      const pair = pairs.find((p) => p.compared === configuration) ?? pairs.find((p) => p.baseline === configuration)!;
      const app = pair.compared === configuration ? pair.comparedApp : pair.baselineApp;
      const redisCommands = await countRedisCommands(redis, app, `configuration ${index}`);
      const answer = await ask(app, `${KNOWN_QUESTION} fleet served check ${index}`);
      const scope = await circuitScope(app);
      const ratio = median(sample.ratios);
      scenarios.push({
        name: configuration.name,
        shared: configuration.shared,
        requestsPerSecond: median(sample.requestsPerSecond),
        cpuUsPerRequest: median(sample.cpuUsPerRequest),
        p50Ms: median(sample.p50Ms),
        p99Ms: median(sample.p99Ms),
        non2xx: sample.non2xx,
        errors: sample.errors,
        modelCallsPerAnswer: median(sample.modelCallsPerAnswer),
        scope,
        served: String(answer['source']),
        redis: redisCommands,
        ...(configuration.baseline === undefined
          ? {}
          : {
              baseline: configuration.baseline,
              ratio,
              ratioMin: Math.min(...sample.ratios),
              ratioMax: Math.max(...sample.ratios),
              cpuRatio: median(sample.cpuRatios),
              goal: configuration.control
                ? 'none (1.00 but for noise)'
                : `≥ ${MIN_RATIO * 100} % of baseline: ${ratio >= MIN_RATIO ? 'met' : 'MISSED'}`,
            }),
      });
    }
    return { rounds: ROUNDS, roundSeconds: ROUND_SECONDS, scenarios, idle, pinning };
  } finally {
    await Promise.all(apps.map((app) => app.kill('SIGTERM')));
    await redis.stop();
    await upstream.close();
  }
}

function breakdown(counts: Record<string, number>): string {
  return Object.entries(counts)
    .map(([command, n]) => `${command} ${fixed(n)}`)
    .join(', ');
}

export function fleetTables({ rounds, roundSeconds, scenarios, idle, pinning }: FleetBenchResult): string {
  const table = markdownTable(
    [
      `healthy model path (every question new), ${CONNECTIONS} connections, median of ${rounds} rounds × ${roundSeconds} s, each next to its baseline`,
      ...PAIRED_COLUMNS,
      'model calls per answer',
      'circuit scope',
      `Redis commands per request (${MONITORED_REQUESTS} one at a time, PING aside)`,
      'served by',
      'goal',
    ],
    scenarios.map((s) => [
      s.name,
      ...pairedCells(s),
      fixed(s.modelCallsPerAnswer),
      s.scope,
      `${fixed(s.redis.perRequest)}: ${breakdown(s.redis.byCommand)}` +
        (s.redis.inLuaPerRequest > 0 ? `; in Lua ${fixed(s.redis.inLuaPerRequest)}: ${breakdown(s.redis.inLuaByCommand)}` : ''),
      s.served,
      s.goal ?? '',
    ]),
  );
  return (
    `Two apps per compared row (it and a baseline of its own), all with one REDIS_URL (the answer cache and, when shared, the circuit) ` +
    `and one fake upstream answering at once (${pinning}). While every app stood idle Redis received ${fixed(idle.perSecond, 1)} commands/s besides PING${idle.perSecond > 0 ? ` (${breakdown(idle.byCommand)})` : ''}.\n\n` +
    table
  );
}
