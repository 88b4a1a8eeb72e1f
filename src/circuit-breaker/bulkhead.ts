/**
 * At most `capacity` calls in flight; past it a call is refused at once, never queued, so a slow upstream
 * cannot make one replica hold thousands of sockets and waiting requests.
 */
export class Bulkhead {
  private active = 0;

  constructor(readonly capacity: number) {}

  get inFlight(): number {
    return this.active;
  }

  /** Takes a slot; false when none is free. Every true must be followed by one `release()`. */
  tryAcquire(): boolean {
    if (this.active >= this.capacity) return false;
    this.active++;
    return true;
  }

  release(): void {
    this.active = Math.max(0, this.active - 1);
  }
}
