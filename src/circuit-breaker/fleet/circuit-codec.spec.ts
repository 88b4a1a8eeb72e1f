import { describe, expect, it } from '@jest/globals';
import { type FleetState, parseFleetState, parseReply } from './circuit-codec.js';
import { CIRCUIT_SCRIPTS } from './circuit-scripts.js';

// The TypeScript half of the scripts' edge; the Lua half (cjson on a real Redis) runs in
// test/fleet-circuit.redis.e2e-spec.ts.

const AT = new Date('2030-01-01T00:00:00.123Z').getTime();

/** The state as the scripts' `encode` writes it: a cause only when there is one, its status only when the upstream answered. */
const published = {
  epoch: `${AT - 5000}-me`,
  version: 3,
  generation: 2,
  phase: 'open',
  failures: 5,
  failedTrials: 1,
  openedAt: AT,
  openUntil: AT + 30_000,
  leased: false,
  leaseUntil: 0,
  by: 'me',
  cause: { kind: 'http', status: 503, at: AT - 1 },
  now: AT + 1,
  changed: true,
  granted: false,
};

const encoded = (fields: Record<string, unknown> = {}): string => JSON.stringify({ ...published, ...fields });

describe('parseFleetState', () => {
  it('decodes what the scripts return and publish', () => {
    expect(parseFleetState(encoded())).toEqual(published);
    expect(parseFleetState(encoded({ cause: { kind: 'timeout', at: 900 } })).cause).toEqual({ kind: 'timeout', at: 900 });
    expect(parseFleetState(encoded({ cause: undefined }))).not.toHaveProperty('cause');
  });

  it('gives back every state it is given, epoch milliseconds and ids exact', () => {
    const states: FleetState[] = [
      { ...(published as FleetState), phase: 'half_open', leased: true, leaseUntil: AT + 2000, granted: true },
      { ...(published as FleetState), phase: 'closed', openedAt: 0, openUntil: 0, cause: { kind: 'network', at: AT } },
      // The largest times cjson writes exactly (14 significant digits), and ids that look like numbers.
      { ...(published as FleetState), epoch: '12345', by: '0', now: 99_999_999_999_999, openUntil: 99_999_999_999_998 },
    ];
    for (const state of states) expect(parseFleetState(JSON.stringify(state))).toEqual(state);
  });

  it('leaves out fields it does not know, so a later version may add some', () => {
    const state = parseFleetState(encoded({ lateAddition: 1, cause: { kind: 'http', status: 500, at: AT, detail: 'x' } }));
    expect(state).not.toHaveProperty('lateAddition');
    expect(state.cause).toEqual({ kind: 'http', status: 500, at: AT });
  });

  it('refuses anything else', () => {
    expect(() => parseFleetState(42)).toThrow('unexpected circuit reply: number');
    expect(() => parseFleetState(null)).toThrow('unexpected circuit reply: object');
    // The `|`-separated encoding of earlier versions, and JSON that is not the state.
    expect(() => parseFleetState('3|2|open|5|1|1000|2000|1|2500|me|http|503|900|1500|1|0|1000-me')).toThrow('unexpected circuit reply');
    for (const text of ['', '{', 'null', '[]', '"open"', '{"version":1}'])
      expect(() => parseFleetState(text)).toThrow(`unexpected circuit reply: ${text}`);
    const malformed: Array<Record<string, unknown>> = [
      { phase: 'ajar' },
      { openUntil: 'soon' },
      { openUntil: `${AT}` },
      { version: undefined },
      { leased: 1 },
      { changed: 'true' },
      { epoch: 1000 },
      { by: null },
      { cause: 'http' },
      { cause: { kind: '', at: AT } },
      { cause: { kind: 'http', status: '503', at: AT } },
      { cause: { kind: 'http' } },
    ];
    for (const fields of malformed) expect(() => parseFleetState(encoded(fields))).toThrow('unexpected circuit reply');
  });
});

describe('parseReply', () => {
  it('reads an empty reply as nothing changed, and any other as the state, or throws', () => {
    expect(parseReply('')).toBeUndefined();
    expect(parseReply(encoded())).toEqual(published);
    expect(() => parseReply(undefined)).toThrow('unexpected circuit reply: undefined');
    expect(() => parseReply('1|0|closed')).toThrow('unexpected circuit reply');
  });
});

describe('a circuit script’s arguments', () => {
  it('go as one JSON object with the caller, leaving out what is undefined (Redis’ own clock, no wait hint)', () => {
    const args = {
      generation: 4,
      failureThreshold: 5,
      resetTimeoutMs: 30_000,
      maxOpenMs: 300_000,
      opensAtOnce: false,
      holdOpenMs: undefined,
      cause: { kind: 'http', status: undefined },
      failureRate: 0.5,
      windowMs: 30_000,
      minCalls: 20,
    };
    expect(JSON.parse(CIRCUIT_SCRIPTS.failure.encode({ by: 'replica-1' }, args))).toEqual({
      by: 'replica-1',
      generation: 4,
      failureThreshold: 5,
      resetTimeoutMs: 30_000,
      maxOpenMs: 300_000,
      opensAtOnce: false,
      cause: { kind: 'http' },
      failureRate: 0.5,
      windowMs: 30_000,
      minCalls: 20,
    });
    expect(JSON.parse(CIRCUIT_SCRIPTS.acquire.encode({ now: AT, by: '7' }, { token: '7:1', leaseMs: 2000 }))).toEqual({
      now: AT,
      by: '7',
      token: '7:1',
      leaseMs: 2000,
    });
  });

  it('keep a number JSON cannot hold as the string the scripts read it from (a wait hint past any limit)', () => {
    const args = { generation: 1, token: 't', outcome: 'failure', resetTimeoutMs: 1, maxOpenMs: 2, resetBackoff: 1, random: 0.25 } as const;
    expect(
      JSON.parse(CIRCUIT_SCRIPTS.trial.encode({ by: 'me' }, { ...args, holdOpenMs: Infinity, cause: { kind: 'http' } })),
    ).toMatchObject({
      holdOpenMs: 'Infinity',
      random: 0.25,
    });
  });
});
