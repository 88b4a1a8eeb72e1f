import type { AnswerSource } from './assistant-answer.dto.js';
import type { AssistantAnswerDto } from './assistant-answer.dto.js';
import type { FallbackReason } from './assistant.errors.js';

/** How a streamed answer ended: with done (completed or interrupted), or before it (the client left, or an error). */
export type StreamOutcome = 'completed' | 'interrupted' | 'abandoned';

/** Where a coalesced request's answer came from: a call on this replica, or another replica's (through Redis). */
export type CoalescingScope = 'replica' | 'fleet';

/** What AssistantService tells its observers (the metrics), as it happens; a listener must not throw. */
export interface AnswerListener {
  /** An answer given, in JSON or as a stream's done event. */
  answered(answer: AssistantAnswerDto): void;
  /** A 503: nothing was left to answer from. */
  unavailable(reason: FallbackReason): void;
  /** A streamed answer's first token, seconds after the request, by where it came from. */
  firstToken(source: Exclude<AnswerSource, 'excerpts'>, seconds: number): void;
  streamEnded(outcome: StreamOutcome): void;
  /** An answer from another request's model call for the same question (ASSISTANT_COALESCE). */
  coalesced(scope: CoalescingScope): void;
  /** A wait for another replica's answer ran out (CACHE_COALESCE_WAIT_SECONDS, or its lease expired): this one asks. */
  coalesceWaitTimedOut(): void;
}
