// Memory under steady new questions: the built app (embedded cache, the heap flags the image ships) answers
// TOTAL unique questions from the fake upstream (4.6 KB answers); every 20 000 it prints req/s, the app's CPU µs per
// request, RSS and p99. The app runs on CPU 0, the load and the upstream on the other.
//   npm run build && npx tsc -p tsconfig.bench.json && node dist-bench/scripts/unique-questions.js   (TOTAL=200000)
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { FakeHfUpstream } from '../test/support/fake-hf-upstream.js';
import { freePort } from '../test/support/redis-server.js';

const TOTAL = Number(process.env['TOTAL'] ?? 200_000);
const SLICE = 20_000;
/** As the Dockerfile's CMD. */
const HEAP_FLAGS = ['--max-old-space-size=256', '--max-semi-space-size=16'];
const ANSWER = 'A circuit breaker stops calls to a failing model and lets one trial through after the reset period. '.repeat(45);

const upstream = await FakeHfUpstream.start();
upstream.setFault({ kind: 'ok', answer: ANSWER });
const port = await freePort();
const env = {
  PATH: process.env['PATH'] ?? '',
  NODE_ENV: 'test',
  HOST: '127.0.0.1',
  PORT: String(port),
  HF_ENDPOINT_URL: upstream.url,
  LOG_LEVEL: 'silent',
};
const app = spawn('taskset', ['-c', '0', process.execPath, ...HEAP_FLAGS, 'dist/main.js'], { env, stdio: 'ignore' });
const pid = app.pid!;
for (;;) {
  const ready = await fetch(`http://127.0.0.1:${port}/health/ready`).then(
    (r) => r.ok,
    () => false,
  );
  if (ready) break;
  await new Promise((resolve) => setTimeout(resolve, 100));
}

const rssMegabytes = (): number => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024);
/** The app's user + system CPU so far, in µs (clock ticks of 10 ms). */
const cpuMicros = (): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
};

console.log(`idle RSS ${rssMegabytes()} MB`);
let asked = 0;
const slices: Array<{ rps: number }> = [];
for (let done = 0; done < TOTAL; done += SLICE) {
  const cpuBefore = cpuMicros();
  const startedAt = Date.now();
  const result = await autocannon({
    url: `http://127.0.0.1:${port}/assistant/query`,
    connections: 50,
    amount: SLICE,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    requests: [
      { setupRequest: (request) => ({ ...request, body: JSON.stringify({ query: `how does the breaker treat question ${asked++}` }) }) },
    ],
  });
  const slice = {
    after: done + SLICE,
    rps: Math.round(SLICE / ((Date.now() - startedAt) / 1000)),
    cpuMicrosPerRequest: Math.round((cpuMicros() - cpuBefore) / SLICE),
    rssMegabytes: rssMegabytes(),
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
  };
  slices.push(slice);
  console.log(JSON.stringify(slice));
}
console.log(`throughput of the last ${SLICE} / the first: ${(slices.at(-1)!.rps / slices[0].rps).toFixed(2)}`);
app.kill('SIGKILL');
await upstream.close();
