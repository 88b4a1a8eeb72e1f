import { abortReason } from '../common/deadline.js';

/** Makes the events of one flight; `signal` aborts once every participant has left before it ended. */
export type FlightProducer<E> = (signal: AbortSignal) => AsyncGenerator<E, void, undefined>;

/** Why a flight was aborted when its last participant left without a reason of its own. */
export class FlightAbandoned extends Error {
  constructor() {
    super('Every request waiting for this call went away');
    this.name = 'AbortError';
  }
}

/** One participant's place in a flight: its events from the first, and `leave()` (idempotent) when it stops early. */
export interface FlightSeat<E> extends AsyncIterable<E> {
  leave(): void;
}

/**
 * One producer's events, shared: every participant reads them from the first (a replay of what was made so far,
 * then live). The producer is pulled only as fast as its fastest reader asks, so one reader alone keeps today's
 * backpressure. It runs while anybody participates; the last one leaving before the end aborts it.
 */
export class Flight<E> {
  private readonly events: E[] = [];
  private readonly controller = new AbortController();
  private producer?: AsyncGenerator<E, void, undefined>;
  private pulling?: Promise<void>;
  private outcome?: { failed: false } | { failed: true; error: unknown };
  private participants = 0;

  constructor(
    private readonly produce: FlightProducer<E>,
    /** Called once when the flight is over: ended, failed, or abandoned by all. */
    private readonly onOver: () => void,
    /** Called once when the producer has stopped (or, abandoned before its first read, will never start). */
    private readonly afterwards: () => void = () => undefined,
  ) {}

  /** The flight ended (or failed) or was abandoned: nobody may join it any more. */
  get over(): boolean {
    return this.outcome !== undefined || this.controller.signal.aborted;
  }

  /** Counts the participant at once (before its first read); its `signal` aborting ends its reads with its reason. */
  join(signal?: AbortSignal): FlightSeat<E> {
    this.participants++;
    let left = false;
    const leave = (): void => {
      if (left) return;
      left = true;
      this.leave(signal);
    };
    const read = async function* (flight: Flight<E>): AsyncGenerator<E, void, undefined> {
      let index = 0;
      try {
        for (;;) {
          if (index < flight.events.length) {
            yield flight.events[index++];
            continue;
          }
          const outcome = flight.outcome;
          if (outcome?.failed) throw outcome.error;
          if (outcome) return;
          if (flight.controller.signal.aborted) throw abortReason(flight.controller.signal);
          await untilAborted(flight.pull(), signal);
        }
      } finally {
        leave();
      }
    };
    const events = read(this);
    return { [Symbol.asyncIterator]: () => events, leave };
  }

  private pull(): Promise<void> {
    this.producer ??= this.produce(this.controller.signal);
    this.pulling ??= this.producer
      .next()
      .then(
        (result) => (result.done ? this.end({ failed: false }) : void this.events.push(result.value)),
        (error: unknown) => this.end({ failed: true, error }),
      )
      .finally(() => (this.pulling = undefined));
    return this.pulling;
  }

  private end(outcome: NonNullable<Flight<E>['outcome']>): void {
    if (this.outcome) return;
    const wasOver = this.over;
    this.outcome = outcome;
    if (!wasOver) this.onOver();
    this.afterwards();
  }

  private leave(signal: AbortSignal | undefined): void {
    this.participants--;
    if (this.participants > 0 || this.over) return;
    // Nobody waits any more: today's behaviour for a lone caller gone, the call is aborted (and counts neither way).
    this.controller.abort(signal?.aborted ? abortReason(signal) : new FlightAbandoned());
    this.onOver();
    const producer = this.producer;
    if (!producer) return this.afterwards();
    // Queued behind a pending read if there is one: the producer's clean-up (its finally blocks) runs either way.
    void producer
      .return()
      .catch(() => undefined)
      .finally(() => {
        if (!this.outcome) this.afterwards();
      });
  }
}

/**
 * In-process single-flight: at most one flight per key. `join` takes a seat on the flight running for the key, if
 * any; `start` begins one. A flight leaves the map the moment it is over, whichever way it ends.
 */
export class SingleFlight<E> {
  private readonly flights = new Map<string, Flight<E>>();

  /** A seat on the flight for `key` now in the air, or undefined when there is none. */
  join(key: string, signal?: AbortSignal): FlightSeat<E> | undefined {
    const flight = this.flights.get(key);
    return flight && !flight.over ? flight.join(signal) : undefined;
  }

  /**
   * Begins the flight for `key` (call it only after join found nothing) and seats its leader, whose `signal` it takes;
   * `afterwards` runs once its producer has stopped, whichever way (what the call held is given back then).
   */
  start(key: string, produce: FlightProducer<E>, options: { signal?: AbortSignal; afterwards?: () => void } = {}): FlightSeat<E> {
    const flight: Flight<E> = new Flight(
      produce,
      () => {
        if (this.flights.get(key) === flight) this.flights.delete(key);
      },
      options.afterwards,
    );
    this.flights.set(key, flight);
    return flight.join(options.signal);
  }

  /** Flights in the air now (bounded by the distinct questions in flight). */
  get size(): number {
    return this.flights.size;
  }
}

/** `work`, or its signal's reason as soon as `signal` aborts (the work goes on for whoever else waits for it). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
