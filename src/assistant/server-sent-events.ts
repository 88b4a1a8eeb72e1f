import { Readable } from 'node:stream';
import type { FastifyReply } from 'fastify';
import type { AnswerEvent } from './answer-events.js';

/** A comment line every so often keeps idle proxies and load balancers from closing a quiet stream. */
export const SSE_PING_INTERVAL_MS = 15_000;
export const PING = ': ping\n\n';

/** One event in the text/event-stream format; the data is one line of JSON (JSON escapes every newline). */
export function formatEvent(event: AnswerEvent): string {
  const data = event.type === 'excerpts' ? { excerpts: event.excerpts } : event.type === 'token' ? { text: event.text } : event.answer;
  return `event: ${event.type}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** Writes one answer event as text/event-stream text (one event or several); the wire format of one transport. */
export type AnswerEventFormatter = (event: AnswerEvent) => string;

/**
 * The events as text/event-stream chunks (`format`: this app's events by default), with a ping comment after each
 * `pingIntervalMs` without an event. Pulled one chunk at a time, so a slow reader slows the reading of the events (and
 * of the model's stream) instead of making anything buffer. Stopping early (return()) ends the events too.
 */
export async function* serverSentEvents(
  events: AsyncIterable<AnswerEvent>,
  pingIntervalMs: number = SSE_PING_INTERVAL_MS,
  format: AnswerEventFormatter = formatEvent,
): AsyncGenerator<string, void, undefined> {
  const iterator = events[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      const next = iterator.next();
      let result: IteratorResult<AnswerEvent> | undefined;
      while (result === undefined) {
        let timer: NodeJS.Timeout | undefined;
        const silence = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), pingIntervalMs)));
        result = await Promise.race([next, silence]);
        clearTimeout(timer);
        if (result === undefined) yield PING;
      }
      if (result.done) break;
      const text = format(result.value);
      if (text !== '') yield text;
    }
    finished = true;
  } finally {
    if (!finished) await iterator.return?.();
  }
}

/**
 * Sets the event-stream headers on `reply` and returns the body Fastify pipes to the socket, one chunk buffered at
 * most: the next event is read only once the socket took the previous one.
 */
export function eventStreamBody(
  reply: FastifyReply,
  events: AsyncIterable<AnswerEvent>,
  format: AnswerEventFormatter = formatEvent,
): Readable {
  void reply
    .header('content-type', 'text/event-stream; charset=utf-8')
    .header('cache-control', 'no-cache, no-transform')
    // nginx (and ingress-nginx) would otherwise buffer the whole stream.
    .header('x-accel-buffering', 'no');
  // Fastify, pino-http, the metrics hooks, the client signal and pipe() put 11 'close' listeners on a streamed response:
  // a fixed number per response, not a leak, but one past Node's warning threshold of 10 (one warning per stream).
  reply.raw.setMaxListeners(Math.max(reply.raw.getMaxListeners(), 20));
  return Readable.from(serverSentEvents(events, SSE_PING_INTERVAL_MS, format), { objectMode: false, highWaterMark: 1 });
}
