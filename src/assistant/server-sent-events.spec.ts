import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import type { AnswerEvent } from './answer-events.js';
import { formatEvent, PING, serverSentEvents } from './server-sent-events.js';

const CIRCUIT = { name: 'huggingface', state: 'closed' } as const;
const DONE: AnswerEvent = {
  type: 'done',
  answer: { answer: 'a\nb', source: 'llm', degraded: false, fallbackReason: null, excerpts: [], circuit: CIRCUIT },
};

/** Events the test releases one by one; records whether the consumer ended it early. */
function controlledEvents() {
  const pending: Array<(result: IteratorResult<AnswerEvent>) => void> = [];
  const state = { returned: false };
  const iterable: AsyncIterable<AnswerEvent> = {
    [Symbol.asyncIterator]: () => ({
      next: () => new Promise<IteratorResult<AnswerEvent>>((resolve) => pending.push(resolve)),
      return: () => {
        state.returned = true;
        return Promise.resolve({ value: undefined, done: true });
      },
    }),
  };
  const release = (event?: AnswerEvent) => pending.shift()?.(event ? { value: event, done: false } : { value: undefined, done: true });
  return { iterable, release, state };
}

describe('serverSentEvents', () => {
  beforeEach(() => {
    jest.useFakeTimers();
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('writes each event as `event:` and one `data:` line of JSON, newlines escaped', () => {
    expect(formatEvent({ type: 'token', text: 'line one\nline two' })).toBe('event: token\ndata: {"text":"line one\\nline two"}\n\n');
    expect(formatEvent({ type: 'excerpts', excerpts: [] })).toBe('event: excerpts\ndata: {"excerpts":[]}\n\n');
    expect(
      formatEvent(DONE)
        .split('\n')
        .filter((line) => line.startsWith('data: ')),
    ).toHaveLength(1);
  });

  it('sends a ping comment after each interval without an event, and none while events flow', async () => {
    const { iterable, release } = controlledEvents();
    const chunks: string[] = [];
    const reading = (async () => {
      for await (const chunk of serverSentEvents(iterable, 15_000)) chunks.push(chunk);
    })();
    await jest.advanceTimersByTimeAsync(14_000);
    expect(chunks).toEqual([]);
    await jest.advanceTimersByTimeAsync(1_000);
    expect(chunks).toEqual([PING]);
    await jest.advanceTimersByTimeAsync(15_000);
    expect(chunks).toEqual([PING, PING]);
    release({ type: 'token', text: 'hi' });
    await jest.advanceTimersByTimeAsync(10_000);
    expect(chunks).toEqual([PING, PING, formatEvent({ type: 'token', text: 'hi' })]);
    release(DONE);
    await jest.advanceTimersByTimeAsync(1);
    release();
    await reading;
    expect(chunks.at(-1)).toBe(formatEvent(DONE));
  });

  it('a reader that stops early ends the events too (the model stream behind them is aborted)', async () => {
    const { iterable, release, state } = controlledEvents();
    const chunks = serverSentEvents(iterable, 15_000);
    const first = chunks.next();
    release({ type: 'token', text: 'x' });
    await first;
    await chunks.return();
    expect(state.returned).toBe(true);
  });
});
