import { describe, expect, it } from '@jest/globals';
import { SlidingWindowCounter } from './sliding-window.js';

function clock(start = 1_000_000) {
  const time = { now: start };
  return { time, counter: new SlidingWindowCounter(() => time.now) };
}

describe('SlidingWindowCounter', () => {
  it('admits up to the limit in a window, then refuses without counting the refusals', () => {
    const { time, counter } = clock();
    expect(counter.hit('a', 60_000, 3)).toEqual({ hits: 1, admitted: true, msLeft: 60_000 });
    time.now += 10_000;
    expect(counter.hit('a', 60_000, 3)).toMatchObject({ hits: 2, admitted: true });
    time.now += 10_000;
    expect(counter.hit('a', 60_000, 3)).toMatchObject({ hits: 3, admitted: true, msLeft: 40_000 });
    for (let i = 0; i < 5; i++) expect(counter.hit('a', 60_000, 3)).toEqual({ hits: 3, admitted: false, msLeft: 40_000 });
  });

  it('slides: each request leaving the window lets one more in, when msLeft said it would', () => {
    const { time, counter } = clock();
    counter.hit('a', 1000, 2);
    time.now += 300;
    counter.hit('a', 1000, 2);
    const refused = counter.hit('a', 1000, 2);
    expect(refused).toMatchObject({ admitted: false, msLeft: 700 });
    time.now += refused.msLeft - 1;
    expect(counter.hit('a', 1000, 2).admitted).toBe(false);
    time.now += 1;
    expect(counter.hit('a', 1000, 2)).toMatchObject({ admitted: true, hits: 2, msLeft: 300 });
    expect(counter.hit('a', 1000, 2)).toMatchObject({ admitted: false, msLeft: 300 });
  });

  it('never reports more time left than the window, whatever fractional time the clock reads', () => {
    // (116683.20668603682 + 60000) - 116683.20668603682 is 60000.000000000015 in floating point: ceil'd to 61 s.
    const time = { now: 116_683.206_686_036_82 };
    const counter = new SlidingWindowCounter(() => time.now);
    expect(counter.hit('a', 60_000, 3).msLeft).toBe(60_000);
    for (let i = 0; i < 2000; i++) {
      time.now = i * 4_999.123_456_789 + 0.1;
      expect(counter.hit(`caller-${i}`, 60_000, 3).msLeft).toBeLessThanOrEqual(60_000);
    }
  });

  it('keeps callers apart', () => {
    const { counter } = clock();
    counter.hit('a', 1000, 1);
    expect(counter.hit('a', 1000, 1).admitted).toBe(false);
    expect(counter.hit('b', 1000, 1).admitted).toBe(true);
  });

  it('holds a limit in the hundreds of thousands, refusing correctly past it (a spread into Math.min would overflow the stack)', () => {
    const { time, counter } = clock();
    const limit = 150_000;
    let admitted = 0;
    // A thousand requests a millisecond: the first thousand at the start, the last at +149 ms.
    for (let i = 0; i < limit; i++) {
      if (i > 0 && i % 1000 === 0) time.now += 1;
      if (counter.hit('busy', 60_000, limit).admitted) admitted++;
    }
    expect(admitted).toBe(limit);
    expect(counter.hit('busy', 60_000, limit)).toEqual({ hits: limit, admitted: false, msLeft: 60_000 - 149 });
    time.now += 60_000 - 149;
    // The first thousand (all at the first millisecond) left together: room for a thousand more, no more.
    admitted = 0;
    for (let i = 0; i < 1001; i++) if (counter.hit('busy', 60_000, limit).admitted) admitted++;
    expect(admitted).toBe(1000);
  });

  it('stays right across many windows of steady traffic (expired times are dropped and the array compacted)', () => {
    const { time, counter } = clock();
    for (let i = 0; i < 10_000; i++) {
      time.now += 10;
      // 100 ms window, 10 ms apart: 10 requests in any window, never more.
      expect(counter.hit('steady', 100, 10)).toMatchObject({ admitted: true, hits: 10 > i ? i + 1 : 10 });
    }
  });

  it('forgets callers idle for a whole window, and only those', () => {
    const { time, counter } = clock();
    counter.hit('idle', 1000, 5);
    time.now += 600;
    counter.hit('active', 1000, 5);
    time.now += 400;
    counter.sweep();
    expect(counter.callers).toBe(1);
    expect(counter.hit('active', 1000, 5).hits).toBe(2);
  });
});
