import { describe, expect, it } from '@jest/globals';
import { retryAfterFromUpstream } from './retry-after.js';

const headers = (init: Record<string, string>) => new Headers(init);

describe('retryAfterFromUpstream', () => {
  it('reads Retry-After given in seconds', () => {
    expect(retryAfterFromUpstream(headers({ 'retry-after': '17' }), undefined)).toBe(17);
  });

  it('reads Retry-After given as an HTTP date, rounded up', () => {
    const now = Date.parse('2026-11-27T10:00:00Z');
    expect(retryAfterFromUpstream(headers({ 'retry-after': 'Fri, 27 Nov 2026 10:00:42 GMT' }), undefined, now)).toBe(42);
  });

  it("reads the Hub's IETF-draft ratelimit header when Retry-After is missing", () => {
    expect(retryAfterFromUpstream(headers({ ratelimit: '"api";r=0;t=55' }), undefined)).toBe(55);
  });

  it("ignores the Hub's ratelimit header while requests remain: t is then only when the window resets", () => {
    expect(retryAfterFromUpstream(headers({ ratelimit: '"api";r=489;t=189' }), undefined)).toBeUndefined();
    expect(retryAfterFromUpstream(headers({ ratelimit: '"api";t=189' }), undefined)).toBeUndefined();
  });

  it('waits for the longest exhausted limit when the ratelimit header lists several', () => {
    expect(retryAfterFromUpstream(headers({ ratelimit: '"api";r=0;t=55, "burst";r=3;t=500, "day";r=0;t=70' }), undefined)).toBe(70);
    expect(retryAfterFromUpstream(headers({ ratelimit: '"api";r=12;t=55, "burst";r=0;t=2' }), undefined)).toBe(2);
  });

  it('falls through to estimated_time when the ratelimit header still has requests left', () => {
    expect(retryAfterFromUpstream(headers({ ratelimit: '"api";r=489;t=189' }), { estimated_time: 20.5 })).toBe(21);
  });

  it("reads a model-loading body's estimated_time when no header says anything", () => {
    expect(retryAfterFromUpstream(headers({}), { error: 'loading', estimated_time: 20.3 })).toBe(21);
  });

  it('prefers Retry-After over the other hints', () => {
    expect(retryAfterFromUpstream(headers({ 'retry-after': '3', ratelimit: '"api";r=0;t=55' }), { estimated_time: 99 })).toBe(3);
  });

  it('never says less than one second', () => {
    expect(retryAfterFromUpstream(headers({ 'retry-after': '0' }), undefined)).toBe(1);
  });

  it('says nothing when the upstream gave no hint or an unreadable one', () => {
    expect(retryAfterFromUpstream(undefined, undefined)).toBeUndefined();
    expect(retryAfterFromUpstream(headers({ 'retry-after': 'later' }), 'plain text')).toBeUndefined();
  });
});
