import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { NestFactory } from '@nestjs/core';
import { circuitBreaker, ConsecutiveBreaker, handleAll } from 'cockatiel';
import Opossum from 'opossum';
import { UseCircuitBreaker } from '../src/circuit-breaker/circuit-breaker.decorator.js';
import { CircuitBreakerModule } from '../src/circuit-breaker/circuit-breaker.module.js';
import { CircuitBreakerRegistry } from '../src/circuit-breaker/circuit-breaker.registry.js';
import { circuitBreakerConfig } from '../src/config/circuit-breaker.config.js';
import { fixed, markdownTable, median, percentile } from './stats.js';

// In-process: what our decorator costs per call next to a direct call, raw opossum and cockatiel,
// and how fast a call is refused once the circuit is open. All measured in one run, as ratios.

const CALLS_PER_ROUND = 20_000;
const ROUNDS = 7;
const FAIL_FAST_SAMPLES = 50_000;
const TIMEOUT_MS = 30_000;

@Injectable()
class GuardedTarget {
  @UseCircuitBreaker()
  async call(value: number, _signal?: AbortSignal): Promise<number> {
    return value + 1;
  }
}

@Module({ imports: [CircuitBreakerModule], providers: [GuardedTarget] })
class BenchModule {}

type Variant = { name: string; call: (i: number) => Promise<unknown> };

export interface BreakerBenchResult {
  perCallNs: Record<string, number>;
  decoratorOverOpossum: number;
  /** Against raw opossum doing the same per-call work (fresh AbortController + timer). */
  decoratorOverOpossumWithAbort: number;
  failFast: { p50Us: number; p99Us: number; maxUs: number; samples: number };
}

export async function runBreakerBench(): Promise<BreakerBenchResult> {
  const app = await NestFactory.createApplicationContext(
    { module: BenchModule, imports: [ConfigModule.forRoot({ isGlobal: true, ignoreEnvFile: true })] },
    { logger: false },
  );
  await app.init();
  const config = app.get<{ timeoutMs: number }>(circuitBreakerConfig.KEY);
  const target = app.get(GuardedTarget);
  const direct = async (value: number) => value + 1;
  const opossum = new Opossum(direct, {
    timeout: config.timeoutMs || TIMEOUT_MS,
    rollingPercentilesEnabled: false,
    enableSnapshots: false,
  });
  // The same work ours does per call (a fresh AbortController whose signal the task gets, a time-out timer), on raw opossum.
  const opossumWithAbort = new Opossum(
    (value: number) => {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
      return direct(value + (controller.signal.aborted ? 1 : 0)).finally(() => clearTimeout(timer));
    },
    { timeout: false, rollingPercentilesEnabled: false, enableSnapshots: false },
  );
  const cockatiel = circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });

  const variants: Variant[] = [
    { name: 'direct async call', call: (i) => direct(i) },
    { name: '@UseCircuitBreaker() (ours)', call: (i) => target.call(i) },
    { name: 'raw opossum fire()', call: (i) => opossum.fire(i) },
    { name: 'raw opossum + per-call AbortController', call: (i) => opossumWithAbort.fire(i) },
    { name: 'cockatiel circuitBreaker', call: (i) => cockatiel.execute(() => direct(i)) },
  ];

  const samples = new Map<string, number[]>(variants.map((v) => [v.name, []]));
  for (const variant of variants) for (let i = 0; i < CALLS_PER_ROUND; i++) await variant.call(i); // warm-up
  for (let round = 0; round < ROUNDS; round++) {
    // Interleaved rounds, so drift on a shared machine hits every variant alike.
    for (const variant of variants) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < CALLS_PER_ROUND; i++) await variant.call(i);
      samples.get(variant.name)?.push(Number(process.hrtime.bigint() - start) / CALLS_PER_ROUND);
    }
  }
  const perCallNs = Object.fromEntries([...samples].map(([name, values]) => [name, median(values)]));

  const registry = app.get(CircuitBreakerRegistry);
  const breaker = registry.get(registry.defaultName);
  const threshold = breaker.snapshot().failureThreshold;
  for (let i = 0; i < threshold; i++) await breaker.fire(() => Promise.reject(new Error('down'))).catch(() => undefined);
  if (breaker.state !== 'open') throw new Error('the circuit did not open');
  const rejectUs: number[] = [];
  for (let i = 0; i < FAIL_FAST_SAMPLES; i++) {
    const start = process.hrtime.bigint();
    await target.call(i).catch(() => undefined);
    rejectUs.push(Number(process.hrtime.bigint() - start) / 1000);
  }
  rejectUs.sort((a, b) => a - b);
  opossum.shutdown();
  opossumWithAbort.shutdown();
  await app.close();

  return {
    perCallNs,
    decoratorOverOpossum: (perCallNs['@UseCircuitBreaker() (ours)'] ?? NaN) / (perCallNs['raw opossum fire()'] ?? NaN),
    decoratorOverOpossumWithAbort:
      (perCallNs['@UseCircuitBreaker() (ours)'] ?? NaN) / (perCallNs['raw opossum + per-call AbortController'] ?? NaN),
    failFast: {
      p50Us: percentile(rejectUs, 50),
      p99Us: percentile(rejectUs, 99),
      maxUs: rejectUs[rejectUs.length - 1] ?? NaN,
      samples: FAIL_FAST_SAMPLES,
    },
  };
}

export function breakerTables(result: BreakerBenchResult): string {
  const base = result.perCallNs['raw opossum fire()'] ?? NaN;
  const overhead = markdownTable(
    ['per call (in-process, median of 7 rounds × 20 000)', 'ns', '× raw opossum'],
    Object.entries(result.perCallNs).map(([name, ns]) => [name, fixed(ns, 0), fixed(ns / base)]),
  );
  const goal = result.decoratorOverOpossum <= 1.2 ? 'met' : 'MISSED';
  const failFast = markdownTable(
    ['fail-fast with the circuit open', 'p50 µs', 'p99 µs', 'max µs', 'goal'],
    [
      [
        'reject through @UseCircuitBreaker()',
        fixed(result.failFast.p50Us),
        fixed(result.failFast.p99Us),
        fixed(result.failFast.maxUs, 1),
        result.failFast.p99Us < 200 ? 'p99 < 0.2 ms: met' : 'p99 < 0.2 ms: MISSED',
      ],
    ],
  );
  const summary =
    `Decorator over raw opossum: ${fixed(result.decoratorOverOpossum)}× (goal ≤ 1.20×: ${goal}). ` +
    `Over raw opossum doing the same per-call AbortController + timer: ${fixed(result.decoratorOverOpossumWithAbort)}×.`;
  return `${overhead}\n\n${summary}\n\n${failFast}`;
}
