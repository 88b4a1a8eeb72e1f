import { FakeHfUpstream } from '../test/support/fake-hf-upstream.js';
import { startAppProcess, type AppProcess } from '../test/support/app-process.js';
import { pinCpus } from '../test/support/cpu-affinity.js';
import { measureWithCpu, pinEveryThread } from './access.bench.js';
import { appEnv, CONNECTIONS, KNOWN_QUESTION, type Load } from './http.bench.js';
import {
  alternateInPairs,
  type Pair,
  PAIRED_COLUMNS,
  pairedCells,
  PairedSamples,
  type PairedScenarioResult,
  type RunSample,
} from './paired-rounds.js';
import { markdownTable, median } from './stats.js';

// What model targets cost on the path that asks a model (every question new, so nothing is a cache hit): two targets
// configured while the first answers, and a failover answer (the first target's circuit open, the second answering),
// each as a ratio to one target answering, measured in alternating pairs as the access bench does.

const ROUNDS = 10;
const ROUND_SECONDS = 2;
const WARMUP_SECONDS = 1;
const THRESHOLD = 5;

interface Configuration {
  name: string;
  baseline?: string;
  /** The second target, `bench-b@<its own fake upstream>`. */
  fallback: boolean;
  /** The first target's upstream fails and its circuit is opened before the runs. */
  firstDown: boolean;
  minRatio?: number;
}

const ONE_TARGET = 'one target answering';
const CONFIGURATIONS: Configuration[] = [
  { name: ONE_TARGET, fallback: false, firstDown: false },
  { name: 'two targets, the first answering', baseline: ONE_TARGET, fallback: true, firstDown: false, minRatio: 0.95 },
  { name: 'two targets, the first open: the second answers', baseline: ONE_TARGET, fallback: true, firstDown: true, minRatio: 0.9 },
];

export interface FailoverScenarioResult extends PairedScenarioResult {
  served: string;
}

export interface FailoverBenchResult {
  rounds: number;
  roundSeconds: number;
  scenarios: FailoverScenarioResult[];
  pinning: string;
}

async function ask(app: AppProcess, query: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${app.url}/assistant/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query }),
  });
  return (await response.json()) as Record<string, unknown>;
}

function describe(answer: Record<string, unknown>): string {
  const failover = Array.isArray(answer['failover']) ? ` after ${JSON.stringify(answer['failover'])}` : '';
  return `${String(answer['source'])} by ${String(answer['model'])}${failover}`;
}

export async function runFailoverBench(): Promise<FailoverBenchResult> {
  const first = await FakeHfUpstream.start();
  const broken = await FakeHfUpstream.start();
  const second = await FakeHfUpstream.start();
  broken.setFault({ kind: 'error500' });
  const apps: AppProcess[] = [];
  let pinning = '';
  let asked = 0;
  const start = async (configuration: Configuration): Promise<AppProcess> => {
    const env = appEnv(configuration.firstDown ? broken : first, {
      HF_MODEL: 'bench-a',
      ...(configuration.fallback ? { HF_FALLBACK_MODELS: `bench-b@${second.url}` } : {}),
    });
    const app = await startAppProcess(env, { output: 'discard' });
    apps.push(app);
    pinning = pinEveryThread(pinCpus(app.process.pid ?? 0, [process.pid]), app);
    if (configuration.firstDown) for (let i = 0; i < THRESHOLD; i++) await ask(app, `opening question ${asked++}`);
    const answer = await ask(app, `probe question ${asked++}`);
    const expected = configuration.firstDown ? 'bench-b' : 'bench-a';
    if (answer['source'] !== 'llm' || answer['model'] !== expected) throw new Error(`${configuration.name}: ${describe(answer)}`);
    return app;
  };
  try {
    const byName = new Map(CONFIGURATIONS.map((c) => [c.name, c]));
    const pairs: Array<Pair<Configuration, AppProcess>> = [];
    for (const compared of CONFIGURATIONS.filter((c) => c.baseline !== undefined)) {
      const baseline = byName.get(compared.baseline!)!;
      pairs.push({ baseline, baselineApp: await start(baseline), compared, comparedApp: await start(compared) });
    }
    const samples = new Map(CONFIGURATIONS.map((c) => [c.name, new PairedSamples()]));
    const load: Load = { method: 'POST', path: '/assistant/query', body: JSON.stringify({ query: KNOWN_QUESTION }), uniqueBodies: true };
    const run = async (configuration: Configuration, app: AppProcess, seconds: number, warmUp = false): Promise<RunSample> => {
      const measured = await measureWithCpu(app, load, seconds);
      if (!warmUp) samples.get(configuration.name)!.record(measured.result, measured.cpuUsPerRequest);
      return measured;
    };
    await alternateInPairs(
      pairs,
      { rounds: ROUNDS, roundSeconds: ROUND_SECONDS, warmUpSeconds: WARMUP_SECONDS },
      run,
      (compared, ratio, cpu) => samples.get(compared.name)!.recordRatio(ratio, cpu),
    );

    const scenarios: FailoverScenarioResult[] = [];
    for (const configuration of CONFIGURATIONS) {
      const sample = samples.get(configuration.name)!;
      const pair = pairs.find((p) => p.compared === configuration) ?? pairs.find((p) => p.baseline === configuration)!;
      const app = pair.compared === configuration ? pair.comparedApp : pair.baselineApp;
      const ratio = median(sample.ratios);
      scenarios.push({
        name: configuration.name,
        requestsPerSecond: median(sample.requestsPerSecond),
        cpuUsPerRequest: median(sample.cpuUsPerRequest),
        p50Ms: median(sample.p50Ms),
        p99Ms: median(sample.p99Ms),
        non2xx: sample.non2xx,
        errors: sample.errors,
        served: describe(await ask(app, `last question ${asked++}`)),
        ...(configuration.baseline === undefined
          ? {}
          : {
              baseline: configuration.baseline,
              ratio,
              ratioMin: Math.min(...sample.ratios),
              ratioMax: Math.max(...sample.ratios),
              cpuRatio: median(sample.cpuRatios),
              goal: `≥ ${(configuration.minRatio ?? 1) * 100} % of baseline: ${ratio >= (configuration.minRatio ?? 1) ? 'met' : 'MISSED'}`,
            }),
      });
    }
    return { rounds: ROUNDS, roundSeconds: ROUND_SECONDS, scenarios, pinning };
  } finally {
    await Promise.all(apps.map((app) => app.kill('SIGTERM')));
    await Promise.all([first.close(), broken.close(), second.close()]);
  }
}

export function failoverTables({ rounds, roundSeconds, scenarios, pinning }: FailoverBenchResult): string {
  const table = markdownTable(
    [
      `model targets on the model path (every question new), ${CONNECTIONS} connections, median of ${rounds} rounds × ${roundSeconds} s, each next to its baseline`,
      ...PAIRED_COLUMNS,
      'served by',
      'goal',
    ],
    scenarios.map((s) => [s.name, ...pairedCells(s), s.served, s.goal ?? '']),
  );
  return `Two apps per compared row (it and a baseline of its own), zero-latency fake upstreams, one per target (${pinning}).\n\n${table}`;
}

/** `node dist-bench/bench/failover.bench.js`: this bench alone. */
if (import.meta.url === `file://${process.argv[1]}`) {
  runFailoverBench().then(
    (result) => process.stdout.write(`${failoverTables(result)}\n`),
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
