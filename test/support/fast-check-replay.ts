import type { Parameters } from 'fast-check';

/**
 * fast-check's run parameters: `runs` by default, or a failure replayed from the seed and path it printed
 * (`FC_SEED=… FC_PATH=…`), or more runs for a longer search (`FC_RUNS=…`).
 */
export function propertyRunParameters(runs: number): Parameters<unknown> {
  const { FC_SEED: seed, FC_PATH: path, FC_RUNS: moreRuns } = process.env;
  return {
    numRuns: moreRuns ? Number(moreRuns) : runs,
    ...(seed ? { seed: Number(seed) } : {}),
    ...(path ? { path } : {}),
  };
}
