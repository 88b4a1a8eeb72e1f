import { describe, expect, it } from '@jest/globals';
import { FlightAbandoned, type FlightSeat, SingleFlight } from './single-flight.js';

/** A producer the test drives: each `emit` makes the next event available, `finish`/`fail` end it. */
class ControlledProducer {
  started = 0;
  cleanedUp = 0;
  signal?: AbortSignal;
  private readonly queue: Array<{ value?: string; error?: Error; end?: true }> = [];
  private wake?: () => void;

  produce = (signal: AbortSignal): AsyncGenerator<string, void, undefined> => {
    this.started++;
    this.signal = signal;
    return this.run();
  };

  emit(value: string): void {
    this.push({ value });
  }

  finish(): void {
    this.push({ end: true });
  }

  fail(error: Error): void {
    this.push({ error });
  }

  private push(item: { value?: string; error?: Error; end?: true }): void {
    this.queue.push(item);
    this.wake?.();
  }

  private async *run(): AsyncGenerator<string, void, undefined> {
    try {
      for (;;) {
        while (this.queue.length === 0) await new Promise<void>((resolve) => (this.wake = resolve));
        const item = this.queue.shift()!;
        if (item.error) throw item.error;
        if (item.end) return;
        yield item.value!;
      }
    } finally {
      this.cleanedUp++;
    }
  }
}

async function readAll(seat: FlightSeat<string>): Promise<string[]> {
  const events: string[] = [];
  for await (const event of seat) events.push(event);
  return events;
}

const turns = async (n = 5): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
};

describe('SingleFlight', () => {
  it('runs one producer for every participant of a key, each reading every event from the first', async () => {
    const flights = new SingleFlight<string>();
    const producer = new ControlledProducer();
    const leader = readAll(flights.start('q', producer.produce));
    producer.emit('a');
    producer.emit('b');
    await turns();
    // A late joiner gets what was made so far (a replay), then the rest live.
    const follower = readAll(flights.join('q')!);
    producer.emit('c');
    producer.finish();

    expect(await leader).toEqual(['a', 'b', 'c']);
    expect(await follower).toEqual(['a', 'b', 'c']);
    expect(producer.started).toBe(1);
  });

  it('has no flight for a key nobody asks, nor for another key', () => {
    const flights = new SingleFlight<string>();
    const producer = new ControlledProducer();
    flights.start('q', producer.produce);
    expect(flights.join('other')).toBeUndefined();
    expect(flights.size).toBe(1);
  });

  it('drops the flight the moment its producer ends, and runs afterwards once', async () => {
    const flights = new SingleFlight<string>();
    const producer = new ControlledProducer();
    let afterwards = 0;
    const leader = readAll(flights.start('q', producer.produce, { afterwards: () => afterwards++ }));
    producer.emit('a');
    producer.finish();
    await leader;

    expect(flights.size).toBe(0);
    expect(flights.join('q')).toBeUndefined();
    expect(afterwards).toBe(1);
    expect(producer.cleanedUp).toBe(1);
  });

  it("gives every participant the producer's failure, and drops the flight", async () => {
    const flights = new SingleFlight<string>();
    const producer = new ControlledProducer();
    let afterwards = 0;
    const leader = readAll(flights.start('q', producer.produce, { afterwards: () => afterwards++ }));
    const followers = [readAll(flights.join('q')!), readAll(flights.join('q')!)];
    producer.fail(new Error('upstream down'));

    await expect(leader).rejects.toThrow('upstream down');
    for (const follower of followers) await expect(follower).rejects.toThrow('upstream down');
    expect(flights.size).toBe(0);
    expect(afterwards).toBe(1);
  });

  it('pulls the producer only as fast as its fastest reader asks', async () => {
    const flights = new SingleFlight<string>();
    let made = 0;
    const produce = async function* (): AsyncGenerator<string, void, undefined> {
      for (;;) yield String(made++);
    };
    const seat = flights.start('q', produce)[Symbol.asyncIterator]();
    await seat.next();
    await seat.next();
    await turns();
    expect(made).toBe(2);
    await seat.return?.();
  });

  it('goes on for the others when one participant leaves, the leader included', async () => {
    const flights = new SingleFlight<string>();
    const producer = new ControlledProducer();
    const leaderSeat = flights.start('q', producer.produce);
    const follower = readAll(flights.join('q')!);
    const leader = leaderSeat[Symbol.asyncIterator]();
    producer.emit('a');
    expect(await leader.next()).toEqual({ value: 'a', done: false });
    await leader.return?.();
    producer.emit('b');
    producer.finish();

    expect(await follower).toEqual(['a', 'b']);
    expect(producer.signal?.aborted).toBe(false);
  });

  it("ends a participant's reads with its signal's reason when it aborts, without touching the call", async () => {
    const flights = new SingleFlight<string>();
    const producer = new ControlledProducer();
    const leader = readAll(flights.start('q', producer.produce));
    const gone = new AbortController();
    const follower = readAll(flights.join('q', gone.signal)!);
    await turns();
    gone.abort(new Error('client gone'));

    await expect(follower).rejects.toThrow('client gone');
    producer.emit('a');
    producer.finish();
    expect(await leader).toEqual(['a']);
  });

  it('aborts the producer when the last participant leaves, cleans it up and drops the flight', async () => {
    const flights = new SingleFlight<string>();
    const producer = new ControlledProducer();
    let afterwards = 0;
    const gone = new AbortController();
    const leader = readAll(flights.start('q', producer.produce, { signal: gone.signal, afterwards: () => afterwards++ }));
    const follower = flights.join('q')!;
    await turns();
    follower.leave();
    expect(producer.signal?.aborted).toBe(false);
    gone.abort(new Error('client gone'));

    await expect(leader).rejects.toThrow('client gone');
    expect(producer.signal?.aborted).toBe(true);
    expect(producer.signal?.reason).toEqual(new Error('client gone'));
    expect(flights.size).toBe(0);
    // The producer was waiting for its next item: its clean-up runs once that read settles.
    producer.finish();
    await turns();
    expect(producer.cleanedUp).toBe(1);
    expect(afterwards).toBe(1);
  });

  it('drops a flight whose only participant leaves before reading anything, without starting its producer', () => {
    const flights = new SingleFlight<string>();
    const producer = new ControlledProducer();
    let afterwards = 0;
    const seat = flights.start('q', producer.produce, { afterwards: () => afterwards++ });
    seat.leave();
    seat.leave();

    expect(flights.size).toBe(0);
    expect(producer.started).toBe(0);
    expect(afterwards).toBe(1);
  });

  it('aborts with FlightAbandoned when the last participant leaves without a reason of its own', async () => {
    const flights = new SingleFlight<string>();
    const producer = new ControlledProducer();
    const seat = flights.start('q', producer.produce)[Symbol.asyncIterator]();
    producer.emit('a');
    await seat.next();
    await seat.return?.();
    expect(producer.signal?.reason).toBeInstanceOf(FlightAbandoned);
    await turns();
    expect(producer.cleanedUp).toBe(1);
  });

  it('starts a new flight for a key once the previous one is over', async () => {
    const flights = new SingleFlight<string>();
    const first = new ControlledProducer();
    const second = new ControlledProducer();
    const one = readAll(flights.start('q', first.produce));
    first.emit('1');
    first.finish();
    expect(await one).toEqual(['1']);
    const two = readAll(flights.join('q') ?? flights.start('q', second.produce));
    second.emit('2');
    second.finish();
    expect(await two).toEqual(['2']);
  });
});
