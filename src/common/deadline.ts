import { errorMessage } from '../logging/error-message.js';

/** Ends a race at once with `reason`, as its deadline would: the work's controller is aborted, the race rejects. */
export type EndRace = (reason: Error) => void;

export interface RaceOptions {
  /** The work's own controller: aborted with the reason whenever the race ends early (its deadline, an `end`). */
  controller?: AbortController;
  /** Any abort of `controller`, by whoever holds it, ends the race at once with the abort's reason. */
  endOnAbort?: boolean;
  /**
   * The caller's signal: its abort is passed on to `controller` by hand (AbortSignal.any would keep both signals for a
   * finaliser to clean up), and the work decides when to stop; by itself it ends nothing.
   */
  forwardFrom?: AbortSignal;
  /** Holds the race's `end` while it runs, so whoever holds the set (a breaker's shutdown) can end it early. */
  running?: Set<EndRace>;
}

/**
 * The one race against a deadline, its timer and listeners cleaned up in one place. Settles like `work()` unless it
 * ends early first: `ms` pass (rejects with `timeoutError()`, built only then), `end(reason)` is called, or, with
 * `endOnAbort`, the controller aborts (rejects with the reason; aborted already, `work` never starts). Whichever way it
 * settles, a `work` that throws synchronously included, the timer is cleared and every listener removed, at once.
 */
export function raceDeadline<T>(work: () => PromiseLike<T>, ms: number, timeoutError: () => Error, options: RaceOptions = {}): Promise<T> {
  const { controller, running } = options;
  const signal = options.endOnAbort ? controller?.signal : undefined;
  if (signal?.aborted) return Promise.reject(toError(signal.reason));
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    /** True the first time only: the first way to settle wins, and the clean-up runs once. */
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      running?.delete(end);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
      stopForwarding?.();
      return true;
    };
    const end: EndRace = (reason) => {
      if (!settle()) return;
      controller?.abort(reason);
      reject(reason);
    };
    const onAbort = signal ? () => end(toError(signal.reason)) : undefined;
    const timer = setTimeout(() => end(timeoutError()), ms);
    const stopForwarding = controller ? forwardAbort(options.forwardFrom, controller) : undefined;
    running?.add(end);
    if (onAbort) signal?.addEventListener('abort', onAbort, { once: true });
    let pending: PromiseLike<T>;
    try {
      pending = work();
    } catch (error) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the work's own error, as thrown
      if (settle()) reject(error);
      return;
    }
    pending.then(
      (value) => {
        if (settle()) resolve(value);
      },
      (error: unknown) => {
        // After an abort the work's own error (an AbortError) says less than the reason: keep the reason.
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the work's own error, as thrown
        if (settle()) reject(signal?.aborted ? toError(signal.reason) : error);
      },
    );
  });
}

/**
 * `operation`'s result, or `onMiss(why)` when it fails or takes longer than `ms`: a Redis command must never hold a
 * request longer than that (a paused or swapping Redis can leave the connection open and answer nothing).
 */
export function withinDeadline<T, M>(operation: Promise<T>, ms: number, onMiss: (why: string) => M): Promise<T | M> {
  return raceDeadline(
    () => operation,
    ms,
    () => new Error(`no answer within ${ms} ms`),
  ).catch((error: unknown) => onMiss(errorMessage(error)));
}

/** Aborts `to` when `from` aborts, with `reasonOf(from)`; the function returned stops it (undefined: nothing to stop). */
export function forwardAbort(
  from: AbortSignal | undefined,
  to: AbortController,
  reasonOf: (signal: AbortSignal) => unknown = (signal) => signal.reason,
): (() => void) | undefined {
  if (!from) return undefined;
  const forward = () => to.abort(reasonOf(from));
  from.addEventListener('abort', forward, { once: true });
  return () => from.removeEventListener('abort', forward);
}

/** Why a caller's signal aborted, as an Error (an AbortError when it gave none). */
export function abortReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new DOMException('The caller aborted the call', 'AbortError');
}

/** An abort's reason as an Error. */
export function toError(reason: unknown): Error {
  return reason instanceof Error ? reason : new DOMException(String(reason), 'AbortError');
}
