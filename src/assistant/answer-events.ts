import type { Excerpt } from '../knowledge/excerpt.js';
import type { AssistantAnswerDto } from './assistant-answer.dto.js';

/** A streamed answer, event by event (the contract's Streaming section): excerpts once, tokens, done last. */
export type AnswerEvent =
  | { type: 'excerpts'; excerpts: Excerpt[] }
  /** `model`: the target writing the text (a cached answer's, when it is known); transports that name it read it here. */
  | { type: 'token'; text: string; model?: string }
  | { type: 'done'; answer: AssistantAnswerDto };

/**
 * The events of a streamed answer whose first event is already known: everything that can refuse the request
 * (the 503, a client gone) has been decided before it, so the response can commit to 200 and stream the rest.
 */
export class AnswerEventStream implements AsyncIterable<AnswerEvent> {
  private readonly observers: Array<(event: AnswerEvent | 'ended') => void> = [];

  private constructor(
    private readonly first: AnswerEvent,
    private readonly rest: AsyncGenerator<AnswerEvent, void, undefined>,
  ) {}

  /** Waits for the first event; a refusal (UpstreamUnavailableError, ClientGoneError) rejects here, before any event. */
  static async open(events: AsyncGenerator<AnswerEvent, void, undefined>): Promise<AnswerEventStream> {
    const first = await events.next();
    if (first.done) throw new Error('A streamed answer must have at least its done event');
    return new AnswerEventStream(first.value, events);
  }

  /** Calls `observer` with each event as it is read, then once with 'ended' (read to the end, failed, or stopped early). */
  observe(observer: (event: AnswerEvent | 'ended') => void): void {
    this.observers.push(observer);
  }

  /** A plain iterator rather than a generator: its return() ends the answer's generator even before the first read. */
  [Symbol.asyncIterator](): AsyncIterator<AnswerEvent> {
    let first: AnswerEvent | undefined = this.first;
    let ended = false;
    const rest = this.rest;
    const tell = (event: AnswerEvent | 'ended') => {
      if (ended) return;
      ended = event === 'ended';
      for (const observer of this.observers) observer(event);
    };
    return {
      next: async () => {
        let result: IteratorResult<AnswerEvent, void>;
        if (first !== undefined) {
          result = { value: first, done: false };
          first = undefined;
        } else {
          try {
            result = await rest.next();
          } catch (error) {
            tell('ended');
            throw error;
          }
        }
        tell(result.done ? 'ended' : result.value);
        return result;
      },
      // A consumer that stops early (the client left) ends the answer's generator, whose clean-up aborts the model.
      return: async () => {
        tell('ended');
        await rest.return();
        return { value: undefined, done: true };
      },
    };
  }
}
