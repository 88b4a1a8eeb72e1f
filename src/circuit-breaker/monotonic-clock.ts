/**
 * Milliseconds on a clock that never steps: the process's start (wall time) plus the monotonic time since. NTP or a VM
 * resume moving the wall clock changes nothing here, so a circuit's periods last what they say.
 */
export function monotonicNow(): number {
  return performance.timeOrigin + performance.now();
}

/** A time on the monotonic clock as the wall-clock time it stands for now (for display: ISO times, log lines). */
export function toWallClock(monotonicMs: number): number {
  return Date.now() + (monotonicMs - monotonicNow());
}
