import { FakeHfUpstream } from '../test/support/fake-hf-upstream.js';
import { startAppProcess, type AppProcess } from '../test/support/app-process.js';
import { ask } from '../test/support/load.js';
import { fixed, percentile } from '../bench/stats.js';

// `npm run demo`: two upstream simulators (model A, and model B on an endpoint of its own) and the app, then a
// scripted outage and recovery to watch: A goes down and B answers, B goes down too and the fallbacks answer, both
// come back and A answers again.

const QUESTIONS = [
  'What does the half-open state mean?',
  'What should I do when the circuit opens?',
  'Which probe should Kubernetes use for readiness?',
  'How long is a cached answer served as fresh?',
  'What counts as a failure for the circuit breaker?',
  'How do I point the service at my own TGI endpoint?',
];
const HEALTHY = { kind: 'ok', latencyMs: 80, jitterMs: 40 } as const;
const DOWN = { kind: 'error500' } as const;
const TIMELINE = [
  { at: 0, say: 'steady traffic; model A answers', a: HEALTHY, b: HEALTHY },
  { at: 8, say: 'model A goes down (HTTP 500): B answers in its place', a: DOWN, b: HEALTHY },
  { at: 18, say: 'model B goes down too: stale answers and excerpts', a: DOWN, b: DOWN },
  { at: 26, say: 'both are back: A answers again after its half-open trial', a: HEALTHY, b: HEALTHY },
] as const;
const DURATION_SECONDS = 38;
const CLIENTS = 4;

interface Tick {
  requests: number;
  sources: Record<string, number>;
  latenciesMs: number[];
  state: string;
}

const newTick = (state: string): Tick => ({ requests: 0, sources: {}, latenciesMs: [], state });

async function main(): Promise<void> {
  const upstream = await FakeHfUpstream.start();
  const second = await FakeHfUpstream.start();
  // Assigned once the app is up; stop() is installed first so Ctrl-C during start-up still cleans up.
  // eslint-disable-next-line prefer-const
  let app: AppProcess | undefined;
  let running = true;
  const stop = async (code: number) => {
    running = false;
    if (code !== 0) write('\nstopping: the app and the simulator are shut down\n');
    await app?.kill('SIGTERM');
    await Promise.all([upstream.close(), second.close()]);
    process.exit(code);
  };
  process.once('SIGINT', () => void stop(130));
  process.once('SIGTERM', () => void stop(143));

  write(`model A's simulator on ${upstream.url}, model B's on ${second.url}; starting the app…\n`);
  app = await startAppProcess({
    HF_ENDPOINT_URL: upstream.url,
    HF_MODEL: 'model-a',
    HF_FALLBACK_MODELS: `model-b@${second.url}`,
    CIRCUIT_BREAKER_FAIL_THRESHOLD: '3',
    CIRCUIT_BREAKER_TIMEOUT_SECONDS: '1',
    CIRCUIT_BREAKER_RESET_TIMEOUT: '4',
    CACHE_TTL_SECONDS: '6',
    SHUTDOWN_DRAIN_SECONDS: '0',
  });
  write(`app on ${app.url} (targets model-a then model-b, each its own breaker: threshold 3 failures, reset 4 s; fresh cache 6 s)\n\n`);
  write('   t  event\n');

  const startedAt = Date.now();
  const elapsed = () => (Date.now() - startedAt) / 1000;
  let tick = newTick('closed');
  const totals: Record<string, number> = {};
  const statesSeen: string[] = [];
  let n = 0;

  const client = async () => {
    while (running) {
      // Half the questions repeat (cache hits, stale while the model is out); half are new.
      const query = n % 2 === 0 ? QUESTIONS[n % QUESTIONS.length] : `${QUESTIONS[n % QUESTIONS.length]} (variant ${n})`;
      n++;
      const answer = await ask(app?.url ?? '', query);
      const { latencyMs, circuitState } = answer;
      const servedBy = answer.servedBy === 'llm' && answer.model ? `llm by ${answer.model}` : answer.servedBy;
      if (!running) break;
      tick.requests++;
      tick.latenciesMs.push(latencyMs);
      tick.sources[servedBy] = (tick.sources[servedBy] ?? 0) + 1;
      totals[servedBy] = (totals[servedBy] ?? 0) + 1;
      tick.state = circuitState ?? tick.state;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  const pending = [...TIMELINE];
  const clients = Array.from({ length: CLIENTS }, client);
  while (elapsed() < DURATION_SECONDS) {
    const next = pending[0];
    if (next && elapsed() >= next.at) {
      pending.shift();
      upstream.setFault(next.a);
      second.setFault(next.b);
      write(`${fixed(elapsed(), 0).padStart(4)}  >>> ${next.say}\n`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const latencies = tick.latenciesMs.sort((a, b) => a - b);
    const sources = Object.entries(tick.sources)
      .map(([source, count]) => `${source} ${count}`)
      .join(', ');
    if (statesSeen.at(-1) !== tick.state) statesSeen.push(tick.state);
    write(
      `${fixed(elapsed(), 0).padStart(4)}  ${String(tick.requests).padStart(3)} req  A's circuit ${tick.state.padEnd(9)} p99 ${fixed(percentile(latencies, 99), 1).padStart(6)} ms  ${sources}\n`,
    );
    tick = newTick(tick.state);
  }
  running = false;
  await Promise.all(clients);
  const all = Object.values(totals).reduce((a, b) => a + b, 0);
  write(
    `\nsummary: ${all} requests, ${upstream.calls} reached model A, ${second.calls} model B; answers by source: ${JSON.stringify(totals)}\n`,
  );
  const failed = Object.entries(totals).filter(([source]) => /^\d+$|dropped/.test(source));
  write(failed.length ? `requests without an answer: ${JSON.stringify(Object.fromEntries(failed))}\n` : 'every request got an answer.\n');
  write(`A's circuit states, in order: ${statesSeen.join(' → ')}\n`);
  await stop(0);
}

function write(line: string): void {
  process.stdout.write(line);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
