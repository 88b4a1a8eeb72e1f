// The error-shape corpus (test/support/upstream-error-corpus.ts) replayed through HfTextGenClient, the HF client and
// the classifier production uses, against the fake upstream on loopback: each shape must get the verdict the contract
// gives it. The plain service (no Nest, so no breaker): the verdict is what the breaker would be handed.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { modelFailureVerdict } from '../src/hf-textgen/hf-textgen.errors.js';
import { HfTextGenClient } from '../src/hf-textgen/hf-textgen.client.js';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import { UPSTREAM_ERROR_CORPUS, type CallPath, type ExpectedVerdict, type UpstreamErrorFixture } from './support/upstream-error-corpus.js';

const PROMPT = { system: 'Answer from the excerpts.', user: 'Excerpts:\n[1] Guide\nText\n\nQuestion: what is half-open?' };

/** The sentence a verdict makes of a shape's name. */
function describeVerdict(verdict: ExpectedVerdict): string {
  if (!verdict.counts)
    return verdict.local ? 'is this replica’s own shortage: it counts neither way' : 'is left to this request: it counts neither way';
  if (verdict.opensAtOnce) return 'opens the circuit at once';
  if (verdict.holdOpenMs !== undefined) return `holds the circuit open for ${verdict.holdOpenMs / 1000} s`;
  return 'counts toward the threshold, without opening the circuit at once or holding it open';
}

/** The part of modelFailureVerdict's answer the breaker acts on, in the corpus' terms. */
function actedOn(error: unknown): ExpectedVerdict {
  const verdict = modelFailureVerdict(error);
  if (!verdict.counts) return verdict.local ? { counts: false, local: true } : { counts: false };
  return {
    counts: true,
    ...(verdict.opensAtOnce ? { opensAtOnce: true } : {}),
    ...(verdict.holdOpenMs !== undefined ? { holdOpenMs: verdict.holdOpenMs } : {}),
  };
}

const cases = UPSTREAM_ERROR_CORPUS.flatMap((fixture) =>
  fixture.through.map((path): [string, CallPath, UpstreamErrorFixture] => [
    `${fixture.shape} ${describeVerdict(fixture.verdict)}`,
    path,
    fixture,
  ]),
);

describe('the error-shape corpus through HfTextGenClient and the real HF client', () => {
  let upstream: FakeHfUpstream;
  let service: HfTextGenClient;

  beforeAll(async () => {
    upstream = await FakeHfUpstream.start();
    // As a deployment with HF_MAX_NEW_TOKENS above the model's limit would send it.
    service = new HfTextGenClient({
      token: 'hf_corpus_token',
      model: 'org/instruct-model',
      endpointUrl: upstream.url,
      maxNewTokens: 8192,
      temperature: 0.2,
    });
  });
  beforeEach(() => upstream.reset());
  afterEach(() => {
    jest.restoreAllMocks();
  });
  afterAll(() => upstream.close());

  /** What the service throws for this call; a call that succeeds fails the test. */
  async function failureOf(path: CallPath): Promise<unknown> {
    try {
      if (path === 'generate') {
        await service.generate(PROMPT);
      } else {
        const pieces = await service.generateStream(PROMPT);
        for (let next = await pieces.next(); !next.done; next = await pieces.next());
      }
    } catch (error) {
      return error;
    }
    throw new Error(`expected ${path} to fail`);
  }

  it.each(cases)('%s (%s)', async (_name, path, fixture) => {
    if ('upstream' in fixture) upstream.setFault(fixture.upstream);
    else jest.spyOn(globalThis, 'fetch').mockImplementation(() => Promise.reject(fixture.fetchRejectsWith()));

    const error = await failureOf(path);

    expect(actedOn(error)).toEqual(fixture.verdict);
    // the shape really came over HTTP from the fake, or fetch failed before any request left
    expect(upstream.calls).toBe('upstream' in fixture ? 1 : 0);
  });

  it('names a source for every shape, each shape once, and replays each through at least one path', () => {
    for (const fixture of UPSTREAM_ERROR_CORPUS) {
      expect(fixture.source.trim()).not.toBe('');
      expect(fixture.through.length).toBeGreaterThan(0);
    }
    expect(new Set(UPSTREAM_ERROR_CORPUS.map((fixture) => fixture.shape)).size).toBe(UPSTREAM_ERROR_CORPUS.length);
  });
});
