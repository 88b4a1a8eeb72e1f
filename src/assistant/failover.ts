import { abortReason } from '../common/deadline.js';
import type { ChatPrompt } from '../hf-textgen/hf-textgen.client.js';
import { type ModelTarget, TargetPassedError } from '../hf-textgen/model-targets.js';

export const FAILOVER_REASONS = ['circuit_open', 'upstream_error', 'timeout', 'rate_limited', 'overloaded', 'rejected'] as const;

/** One target passed over before another answered (the contract's `failover` entries). */
export interface FailoverEntry {
  model: string;
  reason: (typeof FAILOVER_REASONS)[number];
}

/** The entry for a target passed over; one that is not configured is an upstream error to the caller. */
export function failoverEntry({ model, reason }: TargetPassedError): FailoverEntry {
  return { model, reason: reason === 'upstream_unconfigured' ? 'upstream_error' : reason };
}

/** What asking the targets came to: the answer of the first that gave one, or every target's reason for giving none. */
export type Asked =
  | { answered: true; model: string; text: string; passed: TargetPassedError[] }
  | { answered: true; model: string; pieces: AsyncIterableIterator<string>; passed: TargetPassedError[] }
  | { answered: false; passed: TargetPassedError[] };

export interface FailoverOptions {
  /** The longest the request spends on model calls, every target and hedge together. */
  deadlineMs: number;
  /** A target without a first piece this long gets a hedge (the next admitted target is asked too); 0 = off. */
  hedgeAfterMs: number;
}

/** Aborts a call the request no longer waits for. The call counts neither way on its breaker. */
class CallAbandoned extends Error {
  constructor(readonly why: 'deadline' | 'hedge_lost') {
    super(why === 'deadline' ? "The request's deadline for model calls passed" : 'Another target answered first');
    this.name = 'CallAbandoned';
  }
}

type Started =
  { attempt: Attempt; ok: true; value: AsyncIterableIterator<string> | string } | { attempt: Attempt; ok: false; error: unknown };

/**
 * One call to one target. Its signal is the caller's, or, when the request may stop waiting for it (the deadline
 * comes before the breaker's own time-out, or a hedge may win), one of its own that the caller's abort reaches too.
 */
class Attempt {
  /** Only when the request may abandon the call: the healthy path allocates nothing for it. */
  private readonly controller?: AbortController;
  readonly started: Promise<Started>;
  private timer?: NodeJS.Timeout;
  private readonly forwardCallerAbort?: () => void;

  constructor(
    readonly index: number,
    readonly target: ModelTarget,
    call: (signal: AbortSignal | undefined) => Promise<AsyncIterableIterator<string> | string>,
    private readonly callerSignal: AbortSignal | undefined,
    /** Undefined for the request's first call: its breaker's time-out is never longer than the deadline. */
    leftMs: number | undefined,
    hedging: boolean,
  ) {
    // The breaker's own time-out comes first (and counts) unless less than it is left of the deadline.
    const cutByDeadline = leftMs !== undefined && leftMs < target.timeoutMs;
    if (cutByDeadline || hedging) {
      const controller = (this.controller = new AbortController());
      this.forwardCallerAbort = () => controller.abort(callerSignal?.reason);
      if (callerSignal?.aborted) controller.abort(callerSignal.reason);
      else callerSignal?.addEventListener('abort', this.forwardCallerAbort, { once: true });
      if (cutByDeadline) this.timer = setTimeout(() => this.abandon('deadline'), leftMs);
    }
    this.started = call(this.controller?.signal ?? callerSignal).then(
      (value): Started => ({ attempt: this, ok: true, value }),
      (error: unknown): Started => ({ attempt: this, ok: false, error }),
    );
  }

  /** Why the request stopped waiting for this call, if it did. */
  get abandoned(): CallAbandoned | undefined {
    const reason: unknown = this.controller?.signal.reason;
    return reason instanceof CallAbandoned ? reason : undefined;
  }

  /** Aborts the call; one that runs on the caller's signal is only ever ended by it (or its breaker's time-out). */
  abandon(why: CallAbandoned['why']): void {
    this.end();
    if (this.controller && !this.controller.signal.aborted) this.controller.abort(new CallAbandoned(why));
  }

  /** It started answering: the deadline no longer applies (a stream goes on under its idle time-out). */
  answering(): void {
    clearTimeout(this.timer);
  }

  /** Failed or abandoned: nothing of it needs the caller's signal any more. */
  end(): void {
    clearTimeout(this.timer);
    if (this.forwardCallerAbort) this.callerSignal?.removeEventListener('abort', this.forwardCallerAbort);
  }
}

/**
 * Asks the targets in order until one answers (the contract's Models section): a target is passed over when its
 * circuit refuses, its bulkhead is full, or its call fails or is rejected. Everything happens within the request's
 * deadline; with hedging, a target silent for `hedgeAfterMs` has the next target asked beside it, the first to answer
 * wins and the other is aborted. A streamed request wins at its first piece, so the failover stays invisible to its
 * client; a JSON request asks for the whole answer (or, when hedging, streams it internally to see the first piece).
 * The caller going away rejects with its signal's reason; nothing is left running.
 */
export async function askTargets(
  targets: readonly ModelTarget[],
  prompt: ChatPrompt,
  callerSignal: AbortSignal | undefined,
  streamed: boolean,
  options: FailoverOptions,
): Promise<Asked> {
  // A caller gone before anything started: no call, nothing to count.
  if (callerSignal?.aborted) throw abortReason(callerSignal);
  const internallyStreamed = streamed || options.hedgeAfterMs > 0;
  const passed: Array<TargetPassedError | undefined> = [];
  const running = new Set<Attempt>();
  const deadlineAt = performance.now() + options.deadlineMs;
  let next = 0;
  let lastLaunchAt = 0;
  let latest: Attempt | undefined;

  const pass = (index: number, error: TargetPassedError) => (passed[index] = error);
  const launch = (): void => {
    while (next < targets.length) {
      const index = next++;
      const target = targets[index];
      const leftMs = deadlineAt - performance.now();
      if (leftMs <= 0) {
        pass(index, target.skipped('timeout'));
        continue;
      }
      const call = internallyStreamed
        ? (signal: AbortSignal | undefined) => target.stream(prompt, signal)
        : (signal: AbortSignal | undefined) => target.generate(prompt, signal).then((generation) => generation.text);
      latest = new Attempt(index, target, call, callerSignal, latest === undefined ? undefined : leftMs, options.hedgeAfterMs > 0);
      running.add(latest);
      lastLaunchAt = performance.now();
      return;
    }
  };
  /** The targets passed over before the one that answered (a later one that failed was only a hedge), in order. */
  const before = (winner: number) => passed.slice(0, winner).filter((error): error is TargetPassedError => error !== undefined);

  launch();
  try {
    while (running.size > 0) {
      const hedge = options.hedgeAfterMs > 0 && next < targets.length ? hedgeTimer(lastLaunchAt + options.hedgeAfterMs) : undefined;
      const settled = await Promise.race(hedge ? [...startedOf(running), hedge.fired] : startedOf(running));
      hedge?.cancel();
      if (settled === 'hedge') {
        launch();
        continue;
      }
      const { attempt } = settled;
      running.delete(attempt);
      if (callerSignal?.aborted) {
        attempt.end();
        throw abortReason(callerSignal);
      }
      if (settled.ok) {
        attempt.answering();
        const laterHedges: number[] = [];
        for (const loser of running) {
          loser.abandon('hedge_lost');
          // An earlier target that had not started answering was passed over; a later one was only a hedge.
          if (loser.index < attempt.index) pass(loser.index, loser.target.skipped('timeout'));
          else laterHedges.push(loser.index);
        }
        running.clear();
        const { value } = settled;
        const answered = { answered: true, model: attempt.target.model, passed: before(attempt.index) } as const;
        if (typeof value === 'string') attempt.end();
        if (typeof value === 'string') return { ...answered, text: value };
        if (streamed) return { ...answered, pieces: value };
        const text = await collect(value, attempt, callerSignal);
        attempt.end();
        if (typeof text === 'string') return { ...answered, text };
        pass(attempt.index, text);
        // The winner failed part-way: the later targets it had beaten are asked again, in order.
        next = Math.min(next, ...laterHedges);
      } else {
        attempt.end();
        const abandoned = attempt.abandoned;
        if (abandoned?.why === 'hedge_lost') continue;
        if (abandoned) pass(attempt.index, attempt.target.skipped('timeout'));
        else if (settled.error instanceof TargetPassedError) pass(attempt.index, settled.error);
        else throw settled.error;
      }
      // Nothing is running, or the hedge itself passed: the next target, if any is left.
      if (running.size === 0 || attempt === latest) launch();
    }
    return { answered: false, passed: before(targets.length) };
  } finally {
    // Left early (the caller went away, or an error): nothing keeps running.
    for (const attempt of running) attempt.abandon('hedge_lost');
  }
}

/** A JSON answer that was streamed internally: its whole text, or the target's failure part-way. */
async function collect(pieces: AsyncIterableIterator<string>, attempt: Attempt, callerSignal: AbortSignal | undefined) {
  let text = '';
  try {
    for await (const piece of pieces) text += piece;
    // Blank is no answer, as for a JSON call (the target answered, so its breaker does not count it).
    return text.trim() === '' ? attempt.target.skipped('upstream_error') : text.trim();
  } catch (error) {
    if (callerSignal?.aborted) throw abortReason(callerSignal);
    if (error instanceof TargetPassedError) return error;
    if (attempt.abandoned) return attempt.target.skipped('timeout');
    throw error;
  }
}

function startedOf(running: Set<Attempt>): Array<Promise<Started>> {
  return [...running].map((attempt) => attempt.started);
}

function hedgeTimer(at: number): { fired: Promise<'hedge'>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const fired = new Promise<'hedge'>((resolve) => (timer = setTimeout(() => resolve('hedge'), Math.max(0, at - performance.now()))));
  return { fired, cancel: () => clearTimeout(timer) };
}
