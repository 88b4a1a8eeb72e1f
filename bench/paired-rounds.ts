import type { Result } from 'autocannon';
import { fixed } from './stats.js';

/** One configuration's samples over the rounds. */
export class PairedSamples {
  readonly requestsPerSecond: number[] = [];
  readonly cpuUsPerRequest: number[] = [];
  readonly p50Ms: number[] = [];
  readonly p99Ms: number[] = [];
  /** Per pair with its baseline: req/s over the baseline's, and the baseline's CPU per request over this one's. */
  readonly ratios: number[] = [];
  readonly cpuRatios: number[] = [];
  non2xx = 0;
  errors = 0;

  /** One round's ratios to the baseline: req/s over the baseline's, the baseline's CPU per request over this one's. */
  recordRatio(ratio: number, cpuRatio: number): void {
    this.ratios.push(ratio);
    this.cpuRatios.push(cpuRatio);
  }

  /** One measured run of the configuration: autocannon's result and the app's CPU per request over it. */
  record(result: Result, cpuUsPerRequest: number): void {
    this.requestsPerSecond.push(result.requests.average);
    this.cpuUsPerRequest.push(cpuUsPerRequest);
    this.p50Ms.push(result.latency.p50);
    this.p99Ms.push(result.latency.p99);
    this.non2xx += result.non2xx;
    this.errors += result.errors + result.timeouts;
  }
}

/** A row of a paired bench's table. */
export interface PairedScenarioResult {
  name: string;
  baseline?: string;
  /** Median over the runs (a baseline's over the runs of all its apps). */
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Summed over the rounds. */
  non2xx: number;
  errors: number;
  /** Median over the rounds of req/s over the baseline's in the same round, and the range. */
  ratio?: number;
  ratioMin?: number;
  ratioMax?: number;
  /** The app's CPU time (user + system, all threads) per answered request, median over the rounds. */
  cpuUsPerRequest: number;
  /** Median over the rounds of the baseline's CPU per request over this one's: the ratio were the app's CPU its own. */
  cpuRatio?: number;
  goal?: string;
}

/** One run of one app: autocannon's result and the app's CPU time per request over it. */
export interface RunSample {
  result: Result;
  cpuUsPerRequest: number;
}

/** A compared configuration and the baseline it is a ratio to, each with an app of its own. */
export interface Pair<C, A> {
  baseline: C;
  baselineApp: A;
  compared: C;
  comparedApp: A;
}

export interface RoundsOptions {
  rounds: number;
  roundSeconds: number;
  warmUpSeconds: number;
}

/**
 * The method the access and fleet benches share: every app warmed up once, then `rounds` rounds in which each compared
 * app runs right next to its baseline (which one goes first alternates, and the pairs' order rotates), so a ratio
 * compares two runs a few seconds apart: other work on the machine comes and goes in bursts longer than that.
 * `run` measures one app (`warmUp` runs are not recorded); `ratio` hears each round's req/s over the baseline's and
 * the baseline's CPU per request over the compared one's.
 */
export async function alternateInPairs<C, A>(
  pairs: ReadonlyArray<Pair<C, A>>,
  { rounds, roundSeconds, warmUpSeconds }: RoundsOptions,
  run: (configuration: C, app: A, seconds: number, warmUp?: boolean) => Promise<RunSample>,
  ratio: (compared: C, throughput: number, cpu: number) => void,
): Promise<void> {
  for (const pair of pairs) {
    await run(pair.baseline, pair.baselineApp, warmUpSeconds, true);
    await run(pair.compared, pair.comparedApp, warmUpSeconds, true);
  }
  for (let round = 0; round < rounds; round++) {
    for (let p = 0; p < pairs.length; p++) {
      const { baseline, baselineApp, compared, comparedApp } = pairs[(p + round) % pairs.length];
      const baselineFirst = round % 2 === 0;
      const first = baselineFirst ? await run(baseline, baselineApp, roundSeconds) : await run(compared, comparedApp, roundSeconds);
      const second = baselineFirst ? await run(compared, comparedApp, roundSeconds) : await run(baseline, baselineApp, roundSeconds);
      const [base, measured] = baselineFirst ? [first, second] : [second, first];
      ratio(compared, measured.result.requests.average / base.result.requests.average, base.cpuUsPerRequest / measured.cpuUsPerRequest);
    }
  }
}

/** The columns every paired bench's table has after the row's name. */
export const PAIRED_COLUMNS = [
  'req/s',
  '× baseline (range)',
  'app CPU µs per request',
  '× baseline by CPU',
  'p50 ms',
  'p99 ms',
  'non-2xx',
  'errors',
] as const;

/** A row's cells for PAIRED_COLUMNS. */
export function pairedCells(s: PairedScenarioResult): Array<string | number> {
  return [
    fixed(s.requestsPerSecond, 0),
    s.ratio === undefined ? '1.00' : `${fixed(s.ratio)} (${fixed(s.ratioMin ?? Number.NaN)}–${fixed(s.ratioMax ?? Number.NaN)})`,
    fixed(s.cpuUsPerRequest, 0),
    fixed(s.cpuRatio ?? 1),
    fixed(s.p50Ms, 1),
    fixed(s.p99Ms, 1),
    s.non2xx,
    s.errors,
  ];
}
