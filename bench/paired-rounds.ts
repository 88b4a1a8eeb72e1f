import type { Result } from 'autocannon';

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
