import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { accessTables, runAccessBench } from './access.bench.js';
import { breakerTables, runBreakerBench } from './breaker.bench.js';
import { failoverTables, runFailoverBench } from './failover.bench.js';
import { fleetTables, runFleetBench } from './fleet.bench.js';
import { hotPathTables, runHotPathBench } from './hot-path.bench.js';
import { httpTables, runHttpBench } from './http.bench.js';
import { runStreamingBench, streamingTables } from './streaming.bench.js';

// `npm run bench`: every measurement side by side in one run; prints markdown, writes bench/results/latest.json.
async function main(): Promise<void> {
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`;
  process.stdout.write(`Benchmarks on ${machine}\n\n`);
  const breaker = await runBreakerBench();
  process.stdout.write(`${breakerTables(breaker)}\n\n`);
  const hotPath = await runHotPathBench();
  process.stdout.write(`${hotPathTables(hotPath)}\n\n`);
  const http = await runHttpBench();
  process.stdout.write(`${httpTables(http)}\n\n`);
  const access = await runAccessBench();
  process.stdout.write(`${accessTables(access)}\n\n`);
  const failover = await runFailoverBench();
  process.stdout.write(`${failoverTables(failover)}\n\n`);
  const fleet = await runFleetBench();
  process.stdout.write(`${fleetTables(fleet)}\n\n`);
  const streaming = await runStreamingBench();
  process.stdout.write(`${streamingTables(streaming)}\n`);
  await mkdir(new URL('./results/', import.meta.url), { recursive: true });
  const results = { date: new Date().toISOString(), machine, breaker, hotPath, http, access, failover, fleet, streaming };
  await writeFile(new URL('../../bench/results/latest.json', import.meta.url), `${JSON.stringify(results, null, 2)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
