import { describe, expect, it } from '@jest/globals';
import { type FleetSteps, underLease } from './fleet-coalescing.js';
import type { Claim, FleetLeases, FleetOutcome, Waited } from './fleet-leases.js';

// The protocol alone, over leases that answer as told; test/coalescing.redis.e2e-spec.ts runs it on a real Redis.

/** Leases whose claims come from a list, and whose wait gives one answer; records every release. */
function leases(claims: Array<Claim['kind']>, waited: Waited<string> = { kind: 'ask' }) {
  const released: FleetOutcome[] = [];
  const fake = {
    claim: () => {
      const kind = claims.shift() ?? 'alone';
      const claim: Claim =
        kind === 'owner'
          ? { kind, lease: { release: (outcome) => Promise.resolve(void released.push(outcome)) } }
          : kind === 'held'
            ? { kind, ttlMs: 1000 }
            : { kind };
      return Promise.resolve(claim);
    },
    wait: () => Promise.resolve(waited),
  };
  return { fake: fake as unknown as FleetLeases, released };
}

function steps(ask: () => AsyncGenerator<string, void, undefined>): FleetSteps<string, string> {
  return {
    ask,
    read: () => Promise.resolve(undefined),
    answered: (value) => `from the fleet: ${value}`,
    failed: (outcome) => `fallback: ${outcome.kind === 'failed' ? outcome.reason : ''}`,
    outcomeOf: (event) => (event === 'done' ? { kind: 'answered' } : undefined),
    outcomeOfError: (error) => (error instanceof RangeError ? { kind: 'failed', reason: 'timeout', retryAfterSeconds: 2 } : undefined),
    timedOut: () => undefined,
  };
}

async function* answering(): AsyncGenerator<string, void, undefined> {
  yield 'token';
  yield 'done';
}

async function collect(events: AsyncGenerator<string, void, undefined>): Promise<string[]> {
  const seen: string[] = [];
  for await (const event of events) seen.push(event);
  return seen;
}

const signal = new AbortController().signal;

describe('underLease', () => {
  it('asks while holding the lease and gives it back once, as answered, before the answer is passed on', async () => {
    const { fake, released } = leases(['owner']);
    const seen: string[] = [];
    for await (const event of underLease(fake, 'q', 1000, steps(answering), signal)) seen.push(`${event} (released ${released.length})`);
    expect(seen).toEqual(['token (released 0)', 'done (released 1)']);
    expect(released).toEqual([{ kind: 'answered' }]);
  });

  it('gives the lease back as failed when the call throws a failure the others can use, and as abandoned otherwise', async () => {
    const failing = leases(['owner']);
    // eslint-disable-next-line require-yield
    const throwing = async function* (): AsyncGenerator<string, void, undefined> {
      throw new RangeError('nothing to fall back on');
    };
    await expect(collect(underLease(failing.fake, 'q', 1000, steps(throwing), signal))).rejects.toThrow('nothing to fall back on');
    expect(failing.released).toEqual([{ kind: 'failed', reason: 'timeout', retryAfterSeconds: 2 }]);

    const abandoned = leases(['owner']);
    const events = underLease(abandoned.fake, 'q', 1000, steps(answering), signal);
    await events.next();
    await events.return();
    expect(abandoned.released).toEqual([{ kind: 'abandoned' }]);
  });

  it("takes another replica's answer, or its failure, without asking", async () => {
    let asked = 0;
    const counting = async function* (): AsyncGenerator<string, void, undefined> {
      asked++;
      yield* answering();
    };
    const answered = leases(['held'], { kind: 'answered', value: 'theirs' });
    expect(await collect(underLease(answered.fake, 'q', 1000, steps(counting), signal))).toEqual(['from the fleet: theirs']);
    const failed = leases(['held'], { kind: 'failed', outcome: { kind: 'failed', reason: 'circuit_open', retryAfterSeconds: 5 } });
    expect(await collect(underLease(failed.fake, 'q', 1000, steps(counting), signal))).toEqual(['fallback: circuit_open']);
    expect(asked).toBe(0);
  });

  it('asks once the wait is over without an answer, holding the lease when it is free by then, and without one when not', async () => {
    const freed = leases(['held', 'owner']);
    expect(await collect(underLease(freed.fake, 'q', 1000, steps(answering), signal))).toEqual(['token', 'done']);
    expect(freed.released).toEqual([{ kind: 'answered' }]);
    const stillHeld = leases(['held', 'held']);
    expect(await collect(underLease(stillHeld.fake, 'q', 1000, steps(answering), signal))).toEqual(['token', 'done']);
    expect(stillHeld.released).toEqual([]);
  });
});
