/** The breaker refused the call without running it: the circuit is open, or its single half-open trial is in flight. */
export class CircuitOpenError extends Error {
  /** opossum's code for the same condition, kept so callers that know opossum recognise it. */
  readonly code = 'EOPENBREAKER';

  constructor(
    readonly breaker: string,
    readonly retryAfterSeconds: number,
  ) {
    // A refusal is expected control flow on the fail-fast path: capturing a stack would be most of its cost.
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(`Circuit "${breaker}" is open; next trial in ${retryAfterSeconds}s`);
    Error.stackTraceLimit = stackTraceLimit;
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
