import { ThrottlerStorageService } from '@nestjs/throttler';
import { SlidingWindowCounter } from '../src/rate-limit/sliding-window.js';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createClient } from 'redis';
import { ApiKeys } from '../src/access/api-keys.js';
import { RATE_LIMIT_KEY_PREFIX } from '../src/rate-limit/fleet-throttler.storage.js';
import { FakeHfUpstream } from '../test/support/fake-hf-upstream.js';
import { startAppProcess, type AppProcess } from '../test/support/app-process.js';
import { pinCpus } from '../test/support/cpu-affinity.js';
import { RedisTestServer } from '../test/support/redis-server.js';
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

// What the API key guard and the rate limiter cost on the cache-hit path, as a ratio to the same path without them.
// A pair of app processes per compared configuration (it and its baseline), all started up front (every thread of
// each on CPU 0, the load generator on the other), then measured in rounds: in each, every configuration runs right
// before or after its baseline, so drift, warm-up and other work on the machine hit both alike. Each ratio is the
// median over the rounds of the ratio within the pair.

const ROUNDS = 16;
const ROUND_SECONDS = 2;
const WARMUP_SECONDS = 1;
const MIN_RATIO = 0.9;
const API_KEY = 'bench-key-7f3c9a1e5d2b8046';
/** The highest RATE_LIMIT_PER_MINUTE the app accepts: nothing is refused, every request is counted. */
const LIMIT_PER_MINUTE = 1_000_000;

interface Configuration {
  name: string;
  /** The configuration this one is a ratio to; none for a baseline. */
  baseline?: string;
  redis: boolean;
  keys: boolean;
  limit: boolean;
  /** A control: the same configuration as its baseline in another process, so its ratio is the method's noise. */
  control?: boolean;
}

const CONFIGURATIONS: Configuration[] = [
  { name: 'cache hit (memory), no keys, no limit', redis: false, keys: false, limit: false },
  {
    name: 'control: the same, in a second app',
    baseline: 'cache hit (memory), no keys, no limit',
    redis: false,
    keys: false,
    limit: false,
    control: true,
  },
  { name: '+ API key', baseline: 'cache hit (memory), no keys, no limit', redis: false, keys: true, limit: false },
  { name: '+ API key + limit counted in memory', baseline: 'cache hit (memory), no keys, no limit', redis: false, keys: true, limit: true },
  { name: 'cache hit (Redis), no keys, no limit', redis: true, keys: false, limit: false },
  { name: '+ API key + limit counted in Redis', baseline: 'cache hit (Redis), no keys, no limit', redis: true, keys: true, limit: true },
];

export interface AccessScenarioResult extends PairedScenarioResult {
  /** The answer's source, and with a limit the hits counted in the caller's 60 s window after the last round. */
  served: string;
}

/** In-process: what counting one request costs the in-memory limiter with `hitsInWindow` hits already counted. */
export interface MemoryCountCost {
  hitsInWindow: number;
  /** The app's per-replica counter (SlidingWindowCounter). */
  usPerRequest: number;
  /** @nestjs/throttler's ThrottlerStorageService, which it replaced. */
  libraryUsPerRequest: number;
}

export interface AccessBenchResult {
  rounds: number;
  roundSeconds: number;
  limitPerMinute: number;
  scenarios: AccessScenarioResult[];
  memoryCounting: MemoryCountCost[];
  /** In-process: µs to identify a presented key among the configured one (sha256 + constant-time compare). */
  keyCheckUs: number;
  pinning: string;
}

const CLOCK_TICKS_PER_SECOND = clockTicks();

function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}

/**
 * The CPU time a process has used so far (Linux /proc; NaN elsewhere). Unlike req/s it hardly moves when other work
 * takes the app's CPU away for a while: the cross-check of a ratio measured on a busy machine.
 */
export function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND; // utime, stime (fields 14, 15 of stat)
  } catch {
    return Number.NaN;
  }
}

/** One run of `load` against `app`, with the app's CPU time per request over it (the paired benches' measurement). */
export async function measureWithCpu(app: AppProcess, load: Load, seconds: number): Promise<RunSample> {
  const cpuBefore = cpuSeconds(app.process.pid);
  const result = await measure(app, load, seconds);
  return { result, cpuUsPerRequest: ((cpuSeconds(app.process.pid) - cpuBefore) * 1e6) / result.requests.total };
}

/**
 * pinCpus moves the app's main thread only: its V8 and libuv threads keep the CPUs of the thread that spawned it,
 * both for an app started before the harness pinned itself and CPU 1 (the load generator's) for every later one. Two
 * apps of one configuration then differ by ~10 %; with every thread on CPU 0 they do not.
 */
export function pinEveryThread(pinning: string, app: AppProcess): string {
  if (!pinning.startsWith('app on CPU 0')) return pinning;
  try {
    execFileSync('taskset', ['-a', '-cp', '0', String(app.process.pid)], { stdio: 'ignore' });
    return pinning.replace('app on CPU 0', 'every thread of each app on CPU 0');
  } catch {
    return pinning;
  }
}

function headersFor(configuration: Configuration): Record<string, string> {
  return configuration.keys ? { authorization: `Bearer ${API_KEY}` } : {};
}

/** One cache hit through fetch: where it was served from and, with a limit, how many hits its caller has in the window. */
async function probe(app: AppProcess, configuration: Configuration): Promise<{ source: string; hits?: number }> {
  const response = await fetch(`${app.url}/assistant/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headersFor(configuration) },
    body: JSON.stringify({ query: KNOWN_QUESTION }),
  });
  const body = (await response.json()) as Record<string, unknown>;
  if (response.status !== 200) throw new Error(`${configuration.name}: ${response.status} ${JSON.stringify(body)}`);
  const remaining = /;r=(\d+);/.exec(response.headers.get('ratelimit') ?? '')?.[1];
  if (configuration.limit !== (remaining !== undefined))
    throw new Error(`${configuration.name}: RateLimit header ${remaining ? 'sent' : 'missing'}`);
  return { source: String(body['source']), ...(remaining !== undefined ? { hits: LIMIT_PER_MINUTE - Number(remaining) } : {}) };
}

/** The hits the shared Redis holds for the bench's caller: proof the limiter counted there and not on its own. */
async function hitsInRedis(url: string): Promise<number> {
  const client = createClient({ url });
  await client.connect();
  try {
    const keys = await client.keys(`${RATE_LIMIT_KEY_PREFIX}*`);
    const counts = await Promise.all(keys.map((key) => client.zCard(key)));
    return counts.reduce((sum, count) => sum + count, 0);
  } finally {
    await client.quit();
  }
}

const WINDOW_MS = 60_000;
const HITS_IN_WINDOW = [0, 1_000, 10_000, 100_000];
const COUNTS_PER_SAMPLE = 1000;
const COUNT_SAMPLES = 5;

/**
 * Counting one request in memory, for a few numbers of hits already in the caller's window: the app's per-replica
 * counter (SlidingWindowCounter, O(1) a request) and @nestjs/throttler's ThrottlerStorageService, which it replaced
 * (one expiry time per hit, the whole list filtered on every request). The library's window is filled through its
 * private list (filling it by counting would take quadratic time); checked through the count it then reports.
 */
export async function measureMemoryCounting(): Promise<MemoryCountCost[]> {
  const costs: MemoryCountCost[] = [];
  for (const hitsInWindow of HITS_IN_WINDOW) {
    const ours: number[] = [];
    for (let sample = 0; sample < COUNT_SAMPLES; sample++) {
      const counter = new SlidingWindowCounter();
      for (let i = 0; i < hitsInWindow; i++) counter.hit('bench', WINDOW_MS, LIMIT_PER_MINUTE);
      if (counter.hit('bench', WINDOW_MS, LIMIT_PER_MINUTE).hits !== hitsInWindow + 1)
        throw new Error(`prefilled ${hitsInWindow}: miscounted`);
      const begin = process.hrtime.bigint();
      for (let i = 0; i < COUNTS_PER_SAMPLE; i++) counter.hit('bench', WINDOW_MS, LIMIT_PER_MINUTE);
      ours.push(Number(process.hrtime.bigint() - begin) / 1000 / COUNTS_PER_SAMPLE);
    }
    const samples: number[] = [];
    for (let sample = 0; sample < COUNT_SAMPLES; sample++) {
      const storage = new ThrottlerStorageService();
      try {
        await storage.increment('bench', WINDOW_MS, LIMIT_PER_MINUTE, 0, 'default');
        const internals = storage as unknown as { hitExpirations: Map<string, Map<string, number[]>> };
        const hits = internals.hitExpirations.get('bench')?.get('default');
        if (!hits) throw new Error('ThrottlerStorageService no longer keeps hitExpirations: update the bench');
        const now = Date.now();
        for (let i = 1; i < hitsInWindow; i++) hits.push(now + WINDOW_MS - (i % (WINDOW_MS / 2)));
        const counted = await storage.increment('bench', WINDOW_MS, LIMIT_PER_MINUTE, 0, 'default');
        if (counted.totalHits !== Math.max(1, hitsInWindow) + 1) throw new Error(`prefilled ${hitsInWindow}, counted ${counted.totalHits}`);
        const begin = process.hrtime.bigint();
        for (let i = 0; i < COUNTS_PER_SAMPLE; i++) await storage.increment('bench', WINDOW_MS, LIMIT_PER_MINUTE, 0, 'default');
        samples.push(Number(process.hrtime.bigint() - begin) / 1000 / COUNTS_PER_SAMPLE);
      } finally {
        storage.onApplicationShutdown();
      }
    }
    costs.push({ hitsInWindow, usPerRequest: median(ours), libraryUsPerRequest: median(samples) });
  }
  return costs;
}

const KEY_CHECKS = 100_000;

/** The key check alone, as the guard runs it per request: median of 5 × 100 000. */
export function measureKeyCheck(): number {
  const keys = new ApiKeys([API_KEY]);
  const samples: number[] = [];
  for (let sample = 0; sample < COUNT_SAMPLES; sample++) {
    const begin = process.hrtime.bigint();
    for (let i = 0; i < KEY_CHECKS; i++) if (keys.identify(API_KEY) === undefined) throw new Error('the bench key was not recognised');
    samples.push(Number(process.hrtime.bigint() - begin) / 1000 / KEY_CHECKS);
  }
  return median(samples);
}

export async function runAccessBench(): Promise<AccessBenchResult> {
  const upstream = await FakeHfUpstream.start();
  const redis = await RedisTestServer.start();
  const apps: AppProcess[] = [];
  let pinning = '';
  const start = async (configuration: Configuration): Promise<AppProcess> => {
    const env = appEnv(upstream, {
      ...(configuration.redis ? { REDIS_URL: redis.url } : {}),
      ...(configuration.keys ? { ASSISTANT_API_KEYS: API_KEY } : {}),
      ...(configuration.limit ? { RATE_LIMIT_PER_MINUTE: String(LIMIT_PER_MINUTE) } : {}),
    });
    const app = await startAppProcess(env, { output: 'discard' });
    apps.push(app);
    pinning = pinEveryThread(pinCpus(app.process.pid ?? 0, [process.pid]), app);
    // Asks the model once (the Redis apps share one cache: the second finds the answer there): later requests hit.
    const first = await probe(app, configuration);
    if (!['llm', 'cache'].includes(first.source)) throw new Error(`${configuration.name}: the first answer came from ${first.source}`);
    return app;
  };
  try {
    // Every compared configuration has a baseline app of its own, so both apps of a pair run exactly as often: an app
    // left idle longer between its runs (V8 shrinks an idle heap) would otherwise start each run at a disadvantage.
    const byName = new Map(CONFIGURATIONS.map((c) => [c.name, c]));
    const pairs: Array<Pair<Configuration, AppProcess>> = [];
    for (const compared of CONFIGURATIONS.filter((c) => c.baseline !== undefined)) {
      const baseline = byName.get(compared.baseline!)!;
      pairs.push({ baseline, baselineApp: await start(baseline), compared, comparedApp: await start(compared) });
    }
    const samples = new Map(CONFIGURATIONS.map((c) => [c.name, new PairedSamples()]));
    const run = async (configuration: Configuration, app: AppProcess, seconds: number, warmUp = false): Promise<RunSample> => {
      const load: Load = {
        method: 'POST',
        path: '/assistant/query',
        body: JSON.stringify({ query: KNOWN_QUESTION }),
        headers: headersFor(configuration),
      };
      const run = await measureWithCpu(app, load, seconds);
      if (!warmUp) samples.get(configuration.name)!.record(run.result, run.cpuUsPerRequest);
      return run;
    };
    await alternateInPairs(
      pairs,
      { rounds: ROUNDS, roundSeconds: ROUND_SECONDS, warmUpSeconds: WARMUP_SECONDS },
      run,
      (compared, ratio, cpuRatio) => samples.get(compared.name)!.recordRatio(ratio, cpuRatio),
    );

    const scenarios: AccessScenarioResult[] = [];
    for (const configuration of CONFIGURATIONS) {
      const sample = samples.get(configuration.name)!;
      const pair = pairs.find((p) => p.compared === configuration) ?? pairs.find((p) => p.baseline === configuration)!;
      const { source, hits } = await probe(pair.compared === configuration ? pair.comparedApp : pair.baselineApp, configuration);
      const counted =
        hits === undefined
          ? ''
          : `; ${hits} hits in the window${configuration.redis ? ` (Redis holds ${await hitsInRedis(redis.url)})` : ''}`;
      const ratio = median(sample.ratios);
      scenarios.push({
        name: configuration.name,
        requestsPerSecond: median(sample.requestsPerSecond),
        cpuUsPerRequest: median(sample.cpuUsPerRequest),
        p50Ms: median(sample.p50Ms),
        p99Ms: median(sample.p99Ms),
        non2xx: sample.non2xx,
        errors: sample.errors,
        served: `${source}${counted}`,
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
    const memoryCounting = await measureMemoryCounting();
    return {
      rounds: ROUNDS,
      roundSeconds: ROUND_SECONDS,
      limitPerMinute: LIMIT_PER_MINUTE,
      scenarios,
      memoryCounting,
      keyCheckUs: measureKeyCheck(),
      pinning,
    };
  } finally {
    await Promise.all(apps.map((app) => app.kill('SIGTERM')));
    await redis.stop();
    await upstream.close();
  }
}

export function accessTables({
  rounds,
  roundSeconds,
  limitPerMinute,
  scenarios,
  memoryCounting,
  keyCheckUs,
  pinning,
}: AccessBenchResult): string {
  const table = markdownTable(
    [
      `API key + rate limit on the cache hit, ${CONNECTIONS} connections, median of ${rounds} rounds × ${roundSeconds} s, each next to its baseline`,
      ...PAIRED_COLUMNS,
      'served by',
      'goal',
    ],
    scenarios.map((s) => [s.name, ...pairedCells(s), s.served, s.goal ?? '']),
  );
  // A cache hit's cost: the app's CPU per request on the in-memory baseline, in the same run.
  const baseline = scenarios[0]?.requestsPerSecond ?? Number.NaN;
  const cacheHitUs = scenarios[0]?.cpuUsPerRequest ?? Number.NaN;
  const counting = markdownTable(
    [
      `counting one request in memory (in-process, median of ${COUNT_SAMPLES} × ${COUNTS_PER_SAMPLE})`,
      'µs per request (ours)',
      `share of a cache hit (${fixed(cacheHitUs, 0)} µs)`,
      '× baseline it predicts',
      'µs per request (@nestjs/throttler storage, replaced)',
      '× baseline it would predict',
    ],
    memoryCounting.map((c) => [
      `${c.hitsInWindow} hits already in the caller's window`,
      fixed(c.usPerRequest, 2),
      `${fixed((100 * c.usPerRequest) / cacheHitUs, 2)} %`,
      fixed(cacheHitUs / (cacheHitUs + c.usPerRequest)),
      fixed(c.libraryUsPerRequest, 1),
      fixed(cacheHitUs / (cacheHitUs + c.libraryUsPerRequest)),
    ]),
  );
  const keyCheck = `The key check itself (sha256 of the presented key, a constant-time compare): ${fixed(keyCheckUs)} µs, ${fixed((100 * keyCheckUs) / cacheHitUs, 1)} % of a cache hit.`;
  const steady = `One caller at the baseline's rate for a whole minute would hold ${fixed(baseline * (WINDOW_MS / 1000), 0)} hits in its window.`;
  return (
    `Two apps per compared row (it and a baseline of its own), RATE_LIMIT_PER_MINUTE=${limitPerMinute} (nothing refused, every request counted), one API key sent as Bearer (${pinning}).\n\n` +
    `${table}\n\n${keyCheck}\n\n${counting}\n\n${steady}`
  );
}
