import type { AnswerSource } from './assistant-answer.dto.js';
import type { AssistantAnswerDto } from './assistant-answer.dto.js';
import type { FallbackReason } from './assistant.errors.js';

/** How a streamed answer ended: with done (completed or interrupted), or before it (the client left, or an error). */
export type StreamOutcome = 'completed' | 'interrupted' | 'abandoned';

/** What AssistantService tells its observers (the metrics), as it happens; a listener must not throw. */
export interface AnswerListener {
  /** An answer given, in JSON or as a stream's done event. */
  answered(answer: AssistantAnswerDto): void;
  /** A 503: nothing was left to answer from. */
  unavailable(reason: FallbackReason): void;
  /** A streamed answer's first token, seconds after the request, by where it came from. */
  firstToken(source: Exclude<AnswerSource, 'excerpts'>, seconds: number): void;
  streamEnded(outcome: StreamOutcome): void;
}
