/** One request counted against a caller's window: the same answer the Redis script gives. */
export interface WindowHit {
  /** Requests in the window, this one included when admitted. */
  hits: number;
  admitted: boolean;
  /** Until the oldest counted request leaves the window (when one more will be admitted, if refused). */
  msLeft: number;
}

interface CallerWindow {
  /** Times of the admitted requests, oldest first; those before `head` have left the window. */
  times: number[];
  head: number;
  windowMs: number;
}

/** Past this many expired entries at the front, a window's array is compacted. */
const COMPACT_AFTER = 256;

/**
 * Sliding-window counting in this process, by the rule the Redis script applies: the admitted requests of the last
 * `windowMs` are kept, oldest first; under the limit a request is admitted and kept, over it refused and not kept.
 * Each request costs O(1) amortised whatever the limit (expired times are dropped from the front), and a caller
 * holds at most `limit` times. Callers idle for a whole window are swept away.
 */
export class SlidingWindowCounter {
  private readonly windows = new Map<string, CallerWindow>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  get callers(): number {
    return this.windows.size;
  }

  hit(key: string, windowMs: number, limit: number): WindowHit {
    const now = this.now();
    let window = this.windows.get(key);
    if (!window) {
      window = { times: [], head: 0, windowMs };
      this.windows.set(key, window);
    }
    window.windowMs = windowMs;
    this.dropExpired(window, now);
    let hits = window.times.length - window.head;
    const admitted = hits < limit;
    if (admitted) {
      window.times.push(now);
      hits += 1;
    }
    const oldest = window.times[window.head] ?? now;
    // windowMs minus the oldest request's age, never `oldest + windowMs - now`: with fractional clock readings that
    // sum can round up past windowMs (116683.20668603682 + 60000 - itself is 60000.000000000015), which the
    // whole-second headers then reported as 61 s in a 60 s window.
    return { hits, admitted, msLeft: windowMs - (now - oldest) };
  }

  /** Forgets callers whose every request has left its window. */
  sweep(): void {
    const now = this.now();
    for (const [key, window] of this.windows) {
      const newest = window.times[window.times.length - 1];
      if (newest === undefined || newest <= now - window.windowMs) this.windows.delete(key);
    }
  }

  clear(): void {
    this.windows.clear();
  }

  private dropExpired(window: CallerWindow, now: number): void {
    const { times } = window;
    while (window.head < times.length && times[window.head] <= now - window.windowMs) window.head++;
    if (window.head >= COMPACT_AFTER && window.head * 2 >= times.length) {
      window.times = times.slice(window.head);
      window.head = 0;
    }
  }
}
