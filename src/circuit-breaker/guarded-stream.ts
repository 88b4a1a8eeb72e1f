import { abortReason, forwardAbort, raceDeadline, toError } from '../common/deadline.js';
import { CallTimeoutError, StreamNotConsumedError, StreamStalledError } from './circuit-breaker.errors.js';
import type { CallOutcome } from './circuit-state.js';

/** A streamed call: resolves to the stream (its first item need not have arrived yet). */
export type StreamTask<T> = (signal: AbortSignal) => Promise<AsyncIterable<T>>;

/** A streamed call's limits, the breaker's options of the same names. */
export interface StreamTimeouts {
  /** From the start to the first item. */
  timeoutMs: number;
  /** Between two items after the first, and for the consumer to ask for the next. */
  streamIdleTimeoutMs: number;
}

/**
 * One streamed call's plumbing: its AbortController (aborted by the caller's signal, a deadline, shutdown or an early
 * end), and a deadline on each item: `timeoutMs` for the first (from the start), `streamIdleTimeoutMs` for each next.
 * A deadline or an abort rejects the pending read at once with its reason, whatever the task does with its signal.
 */
export class GuardedStreamCall<T> {
  private readonly controller = new AbortController();
  private readonly startedAt = performance.now();
  private iterator?: AsyncIterator<T>;
  private readonly untrack: () => void;
  private readonly stopForwarding?: () => void;

  constructor(
    readonly breaker: string,
    private readonly options: StreamTimeouts,
    callerSignal: AbortSignal | undefined,
    track: (abort: (reason: Error) => void) => () => void,
  ) {
    this.stopForwarding = forwardAbort(callerSignal, this.controller, abortReason);
    this.untrack = track((reason) => this.controller.abort(reason));
  }

  get durationMs(): number {
    return performance.now() - this.startedAt;
  }

  /** Aborted by the caller's signal, shutdown, a deadline or an early end. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The longest wait for each item after the first, and for the consumer to ask for the next. */
  get idleTimeoutMs(): number {
    return this.options.streamIdleTimeoutMs;
  }

  /** Starts the task and waits for its first item, all within `timeoutMs`. */
  start(task: StreamTask<T>): Promise<IteratorResult<T>> {
    return this.within(this.options.timeoutMs, new CallTimeoutError(this.breaker, this.options.timeoutMs), async () => {
      this.iterator = (await task(this.controller.signal))[Symbol.asyncIterator]();
      return this.iterator.next();
    });
  }

  next(): Promise<IteratorResult<T>> {
    const iterator = this.iterator!;
    return this.within(this.options.streamIdleTimeoutMs, new StreamStalledError(this.breaker, this.options.streamIdleTimeoutMs), () =>
      iterator.next(),
    );
  }

  /** Releases everything; a stream that did not complete has its upstream aborted. */
  end(completed: boolean): void {
    this.stopForwarding?.();
    this.untrack();
    if (completed) return;
    if (!this.controller.signal.aborted) this.controller.abort(new DOMException('The stream ended early', 'AbortError'));
    // The task's own clean-up (its finally blocks); its result no longer matters.
    this.iterator?.return?.().catch(() => undefined);
  }

  private within(ms: number, timeoutError: Error, read: () => Promise<IteratorResult<T>>): Promise<IteratorResult<T>> {
    return raceDeadline(read, ms, () => timeoutError, { controller: this.controller, endOnAbort: true });
  }
}

/**
 * What fireStream resolves to: the items of a streamed call, its first one included. Reading it to the end records a
 * success; an error while reading is rethrown and recorded as classified; `return()` (a `break` out of for-await)
 * ends it early: the upstream is aborted and nothing counts. A consumer that stops pulling (its client stopped
 * reading) for the stream idle time-out has the call ended the same way, and its next read rejects with
 * StreamNotConsumedError: the call gives back its bulkhead place and, as a trial, the trial. An abort while the
 * consumer holds an item (its caller went away, shutdown) ends the call at once, as it would a pending read; the
 * next read rejects with the reason.
 */
export class GuardedStream<T> implements AsyncIterableIterator<T> {
  private first?: IteratorResult<T>;
  private ended = false;
  private reading = false;
  /** Why the call ended while nobody was reading: the next read rejects with it. */
  private endedWith?: Error;
  /** Runs while the consumer holds an item and has not asked for the next. */
  private pullDeadline?: NodeJS.Timeout;

  constructor(
    private readonly call: GuardedStreamCall<T>,
    first: IteratorResult<T>,
    private readonly finish: (outcome?: CallOutcome) => void,
    private readonly outcomeOf: (error: unknown) => CallOutcome,
  ) {
    this.first = first;
    call.signal.addEventListener('abort', () => this.abortedWhileHeld(), { once: true });
    // Aborted between the first item and this stream (the caller left meanwhile): the listener came too late.
    if (call.signal.aborted) this.abortedWhileHeld();
    else this.awaitPull();
  }

  async next(): Promise<IteratorResult<T>> {
    clearTimeout(this.pullDeadline);
    if (this.endedWith) throw this.endedWith;
    if (this.ended) return { value: undefined, done: true };
    let result: IteratorResult<T>;
    this.reading = true;
    try {
      result = this.first ?? (await this.call.next());
    } catch (error) {
      this.end(this.outcomeOf(error));
      throw error;
    } finally {
      this.reading = false;
    }
    this.first = undefined;
    // Aborted after the read had resolved and before this continuation ran: ended as if the read had been pending.
    if (!result.done && this.call.signal.aborted && !this.ended) {
      this.abortedWhileHeld();
      throw this.endedWith!;
    }
    if (result.done) this.end({ kind: 'success' });
    else if (!this.ended) this.awaitPull();
    return result;
  }

  return(): Promise<IteratorResult<T>> {
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private awaitPull(): void {
    const idleMs = this.call.idleTimeoutMs;
    this.pullDeadline = setTimeout(() => {
      this.endedWith = new StreamNotConsumedError(this.call.breaker, idleMs);
      this.end();
    }, idleMs).unref();
  }

  /** A pending read is rejected by the abort itself (and ends the call there); a held item is not. */
  private abortedWhileHeld(): void {
    if (this.reading || this.ended) return;
    this.endedWith = toError(this.call.signal.reason);
    this.end(this.outcomeOf(this.endedWith));
  }

  private end(outcome?: CallOutcome): void {
    clearTimeout(this.pullDeadline);
    if (this.ended) return;
    this.ended = true;
    this.finish(outcome);
  }
}
