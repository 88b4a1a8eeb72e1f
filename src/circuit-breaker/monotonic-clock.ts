/**
 * Milliseconds on a clock that never steps: the process's start (wall time) plus the monotonic time since. NTP or a VM
 * resume moving the wall clock changes nothing here, so a circuit's periods last what they say.
 */
export function monotonicNow(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * The wall clock minus the monotonic one, now. It moves by up to a millisecond from one reading to the next (the wall
 * clock ticks in whole ones): times shown together are converted with one reading.
 */
export function wallClockOffset(): number {
  return Date.now() - monotonicNow();
}

/** A time on the monotonic clock as the wall-clock time it stands for now (for display: ISO times, log lines). */
export function toWallClock(monotonicMs: number, offset = wallClockOffset()): number {
  return monotonicMs + offset;
}
