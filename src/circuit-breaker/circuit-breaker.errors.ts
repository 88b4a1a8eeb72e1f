/**
 * A refusal is expected control flow on the fail-fast path: capturing a stack would be most of its cost, so these
 * errors are built without one.
 */
abstract class StacklessError extends Error {
  constructor(message: string) {
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = stackTraceLimit;
  }
}

/** The breaker refused the call without running it: the circuit is open, or its single half-open trial is in flight. */
export class CircuitOpenError extends StacklessError {
  /** opossum's code for the same condition, kept so callers that know opossum recognise it. */
  readonly code = 'EOPENBREAKER';

  constructor(
    readonly breaker: string,
    readonly retryAfterSeconds: number,
  ) {
    super(`Circuit "${breaker}" is open; next trial in ${retryAfterSeconds}s`);
    this.name = 'CircuitOpenError';
  }
}

/** The call ran longer than the breaker's time-out; its AbortSignal was aborted with this error. */
export class CallTimeoutError extends Error {
  readonly code = 'ETIMEDOUT';

  constructor(
    readonly breaker: string,
    readonly timeoutMs: number,
  ) {
    super(`Call through circuit "${breaker}" timed out after ${timeoutMs}ms`);
    this.name = 'CallTimeoutError';
  }
}

/** A streamed call went longer than the stream idle time-out between two items after its first; its signal was aborted with this. */
export class StreamStalledError extends Error {
  readonly code = 'ESTREAMSTALLED';

  constructor(
    readonly breaker: string,
    readonly idleTimeoutMs: number,
  ) {
    super(`Stream through circuit "${breaker}" sent nothing for ${idleTimeoutMs}ms`);
    this.name = 'StreamStalledError';
  }
}

/** The breaker refused the call because its bulkhead is full: too many calls in flight. Not the upstream's fault. */
export class BulkheadFullError extends StacklessError {
  readonly code = 'EBULKHEAD';
  /** A slot frees the moment one of the calls in flight ends. */
  readonly retryAfterSeconds = 1;

  constructor(
    readonly breaker: string,
    readonly capacity: number,
  ) {
    super(`Circuit "${breaker}" has ${capacity} calls in flight already`);
    this.name = 'BulkheadFullError';
  }
}

/** The application is shutting down: a call still in flight is ended with this, and it counts neither way. */
export class BreakerShutdownError extends Error {
  constructor(readonly breaker: string) {
    super(`Circuit "${breaker}" shut down`);
    this.name = 'BreakerShutdownError';
  }
}

/**
 * A streamed call's consumer stopped pulling items for the stream idle time-out (its client stopped reading): the
 * call was ended, its upstream aborted, its bulkhead place and any trial given back. It counts neither way.
 */
export class StreamNotConsumedError extends Error {
  readonly code = 'ESTREAMNOTCONSUMED';

  constructor(
    readonly breaker: string,
    readonly idleTimeoutMs: number,
  ) {
    super(`Stream through circuit "${breaker}" was not read for ${idleTimeoutMs}ms and was ended`);
    this.name = 'StreamNotConsumedError';
  }
}
