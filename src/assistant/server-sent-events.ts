import { setTimeout as sleep } from 'node:timers/promises';
import type { AnswerEvent } from './answer-events.js';

/** A comment line every so often keeps idle proxies and load balancers from closing a quiet stream. */
export const SSE_PING_INTERVAL_MS = 15_000;
export const PING = ': ping\n\n';

/** One event in the text/event-stream format; the data is one line of JSON (JSON escapes every newline). */
export function formatEvent(event: AnswerEvent): string {
  const data = event.type === 'excerpts' ? { excerpts: event.excerpts } : event.type === 'token' ? { text: event.text } : event.answer;
  return `event: ${event.type}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * The events as text/event-stream chunks, with a ping comment after each `pingIntervalMs` without an event. Pulled
 * one chunk at a time, so a slow reader slows the reading of the events (and of the model's stream) instead of
 * making anything buffer. Stopping early (return()) ends the events too.
 */
export async function* serverSentEvents(
  events: AsyncIterable<AnswerEvent>,
  pingIntervalMs: number = SSE_PING_INTERVAL_MS,
): AsyncGenerator<string, void, undefined> {
  const iterator = events[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      const next = iterator.next();
      let result: IteratorResult<AnswerEvent> | undefined;
      while (result === undefined) {
        const ticker = new AbortController();
        result = await Promise.race([next, sleep(pingIntervalMs, undefined, { signal: ticker.signal }).catch(() => undefined)]);
        ticker.abort();
        if (result === undefined) yield PING;
      }
      if (result.done) break;
      yield formatEvent(result.value);
    }
    finished = true;
  } finally {
    if (!finished) await iterator.return?.();
  }
}
