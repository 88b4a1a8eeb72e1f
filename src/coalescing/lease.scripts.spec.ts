import { describe, expect, it } from '@jest/globals';
import { decodeAcquired, decodeFleetOutcome, encodeRelease } from './lease.scripts.js';

describe("the lease scripts' typed edge", () => {
  it('reads an acquired lease, a held one with what is left of it, and an expired one as nothing left', () => {
    expect(decodeAcquired('{"acquired":true}')).toEqual({ acquired: true });
    expect(decodeAcquired('{"acquired":false,"ttlMs":2500}')).toEqual({ acquired: false, ttlMs: 2500 });
    expect(decodeAcquired('{"acquired":false,"ttlMs":-2}')).toEqual({ acquired: false, ttlMs: 0 });
  });

  it('takes a reply that is not the script’s for no claim at all', () => {
    for (const reply of [undefined, 42, 'not json', '"a string"', 'null', '{"acquired":false}', '{}'])
      expect(decodeAcquired(reply)).toBeUndefined();
  });

  it('reads every outcome a holder publishes, and nothing else', () => {
    expect(decodeFleetOutcome('{"kind":"answered"}')).toEqual({ kind: 'answered' });
    expect(decodeFleetOutcome('{"kind":"abandoned"}')).toEqual({ kind: 'abandoned' });
    expect(decodeFleetOutcome('{"kind":"failed","reason":"circuit_open","retryAfterSeconds":7}')).toEqual({
      kind: 'failed',
      reason: 'circuit_open',
      retryAfterSeconds: 7,
    });
    for (const message of [
      '{"kind":"failed","reason":"bogus","retryAfterSeconds":1}',
      '{"kind":"failed","reason":"timeout"}',
      '{"kind":"other"}',
      '[]',
      'x',
    ])
      expect(decodeFleetOutcome(message)).toBeUndefined();
  });

  it('encodes a release as the token and the outcome, which the channel then carries as it is', () => {
    const outcome = { kind: 'failed', reason: 'timeout', retryAfterSeconds: 3 } as const;
    expect(JSON.parse(encodeRelease('t-1', outcome))).toEqual({ token: 't-1', outcome });
    expect(decodeFleetOutcome(JSON.stringify(outcome))).toEqual(outcome);
  });
});
