import type { FleetLeases, FleetOutcome } from './fleet-leases.js';

/** What coalescing across the fleet needs of one question's chain: its call, its answers, and how they went. */
export interface FleetSteps<E, T> {
  /** The model call: its events, the last one the answer. */
  ask(): AsyncGenerator<E, void, undefined>;
  /** The question's fresh answer in the shared cache, if another replica's call put one there. */
  read(): Promise<T | undefined>;
  /** The event for another replica's answer. */
  answered(value: T): E;
  /** The event for the holder's failure: this request's fallbacks (it may throw, as the 503 does). */
  failed(outcome: Extract<FleetOutcome, { kind: 'failed' }>): E;
  /** How the call went, from one of its events; undefined until its answer. */
  outcomeOf(event: E): FleetOutcome | undefined;
  /** How the call went when it threw; undefined when the error says nothing the others can use. */
  outcomeOfError(error: unknown): FleetOutcome | undefined;
  /** The wait for another replica ran out. */
  timedOut(): void;
}

const ABANDONED: FleetOutcome = { kind: 'abandoned' };

/**
 * One question's call under the fleet's lease: a lease held by another replica means waiting for its answer (its
 * failure: the fallbacks at once; the wait running out: asking here, taking the lease if it is free by then); holding
 * the lease means asking and giving it back, with how the call went, before the answer is passed on, so the other
 * replicas' waits wake as soon as it is cached. Without Redis (or with it failing) the call simply runs.
 */
export async function* underLease<E, T>(
  leases: FleetLeases,
  question: string,
  ttlMs: number,
  steps: FleetSteps<E, T>,
  signal: AbortSignal,
): AsyncGenerator<E, void, undefined> {
  let claim = await leases.claim(question, ttlMs);
  if (claim.kind === 'held') {
    const waited = await leases.wait(
      question,
      claim.ttlMs,
      () => steps.read(),
      signal,
      () => steps.timedOut(),
    );
    if (waited.kind === 'answered') {
      yield steps.answered(waited.value);
      return;
    }
    if (waited.kind === 'failed') {
      yield steps.failed(waited.outcome);
      return;
    }
    claim = await leases.claim(question, ttlMs);
  }
  if (claim.kind !== 'owner') {
    yield* steps.ask();
    return;
  }
  const { lease } = claim;
  let outcome = ABANDONED;
  let released = false;
  const giveBack = async (): Promise<void> => {
    if (released) return;
    released = true;
    await lease.release(outcome);
  };
  try {
    for await (const event of steps.ask()) {
      const ended = steps.outcomeOf(event);
      if (ended) {
        outcome = ended;
        await giveBack();
      }
      yield event;
    }
  } catch (error) {
    outcome = steps.outcomeOfError(error) ?? outcome;
    throw error;
  } finally {
    await giveBack();
  }
}
