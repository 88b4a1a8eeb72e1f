import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import type { CircuitState } from '../circuit-breaker/circuit-breaker.js';
import type { Excerpt } from '../knowledge/excerpt.js';
import { FAILOVER_REASONS, type FailoverEntry } from './failover.js';
import { type CircuitStatus, FALLBACK_REASONS, type FallbackReason, UNAVAILABLE_REASONS } from './assistant.errors.js';

export const ANSWER_SOURCES = ['llm', 'cache', 'excerpts'] as const;
export type AnswerSource = (typeof ANSWER_SOURCES)[number];

/** Every CircuitState exactly once: `satisfies` rejects a missing state and one that does not exist. */
const CIRCUIT_STATES = Object.keys({ closed: true, open: true, half_open: true } satisfies Record<CircuitState, true>);

export class FailoverEntryDto implements FailoverEntry {
  @ApiProperty({ description: 'The target passed over, as configured', example: 'meta-llama/Llama-3.1-8B-Instruct' })
  model!: string;

  @ApiProperty({
    type: 'string',
    enum: FAILOVER_REASONS,
    description: 'Why (rejected: a request-specific rejection; timeout: the deadline ran out)',
  })
  reason!: FailoverEntry['reason'];
}

export class ExcerptDto implements Excerpt {
  @ApiProperty({ description: 'The document the excerpt comes from (its file name without extension)', example: 'circuit-breaker' })
  documentId!: string;

  @ApiProperty({ description: 'Document title and section heading', example: 'The circuit breaker › Half-open' })
  title!: string;

  @ApiProperty({ description: 'The passage itself' })
  text!: string;

  @ApiProperty({ description: 'BM25 relevance, rounded to 2 decimals; higher is better', example: 7.31 })
  score!: number;
}

export class CircuitStatusDto implements CircuitStatus {
  @ApiProperty({ description: 'The breaker guarding the model (CIRCUIT_BREAKER_NAME)', example: 'huggingface' })
  name!: string;

  @ApiProperty({ type: 'string', enum: CIRCUIT_STATES, example: 'closed' })
  state!: CircuitState;
}

/** The 200 body of POST /assistant/query. */
export class AssistantAnswerDto {
  @ApiProperty({ description: "The model's answer, or the excerpts themselves when the model is unavailable" })
  answer!: string;

  @ApiProperty({ type: 'string', enum: ANSWER_SOURCES, description: 'Where the answer came from' })
  source!: AnswerSource;

  @ApiProperty({ description: 'true when the model did not answer this request (stale cache or excerpts)' })
  degraded!: boolean;

  // OpenAPI 3.0 accepts null for an enum only when null is one of its values.
  @ApiProperty({
    type: 'string',
    enum: [...FALLBACK_REASONS, null],
    nullable: true,
    description: 'Why the model did not answer; null when not degraded',
  })
  fallbackReason!: FallbackReason | null;

  @ApiProperty({ type: [ExcerptDto], description: 'The knowledge-base excerpts used as context (at most topK)' })
  excerpts!: ExcerptDto[];

  /** The first target's breaker. */
  @ApiProperty({ type: CircuitStatusDto })
  circuit!: CircuitStatusDto;

  @ApiPropertyOptional({
    description: 'The target that wrote the answer, as configured (without any @<base URL>); present for source llm, and cache when known',
    example: 'meta-llama/Llama-3.1-8B-Instruct',
  })
  model?: string;

  @ApiPropertyOptional({
    type: [FailoverEntryDto],
    description: 'The earlier targets passed over before the one that answered, in order; present only when there were any',
  })
  failover?: FailoverEntryDto[];

  @ApiPropertyOptional({
    type: 'boolean',
    enum: [true],
    description:
      "true when the answer came from another request's model call for the same question, on this replica or another (source llm); absent otherwise",
  })
  coalesced?: true;

  @ApiPropertyOptional({ format: 'date-time', description: 'When the cached answer was made; present when source is cache' })
  cachedAt?: string;

  @ApiPropertyOptional({
    type: 'integer',
    minimum: 1,
    description: 'Seconds until asking again could reach the model; present when degraded',
  })
  retryAfterSeconds?: number;
}

/** The 503 body when nothing is left to answer from; the Retry-After header repeats `retryAfterSeconds`. */
export class UpstreamUnavailableDto {
  @ApiProperty({ type: 'integer', enum: [503], example: 503 })
  statusCode!: 503;

  @ApiProperty({ type: 'string', enum: ['Service Unavailable'], example: 'Service Unavailable' })
  error!: 'Service Unavailable';

  @ApiProperty()
  message!: string;

  @ApiProperty({ type: 'string', enum: UNAVAILABLE_REASONS, description: 'Why the model did not answer' })
  reason!: FallbackReason;

  @ApiProperty({ type: 'integer', minimum: 1 })
  retryAfterSeconds!: number;

  @ApiProperty({ type: CircuitStatusDto })
  circuit!: CircuitStatusDto;
}

/** A 4xx body: Nest's and Fastify's own shape. */
export class ErrorResponseDto {
  @ApiProperty({ type: 'integer', example: 400 })
  statusCode!: number;

  @ApiPropertyOptional({ description: 'The status text; absent from the 413 and 415 bodies', example: 'Bad Request' })
  error?: string;

  @ApiProperty({
    oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }],
    description: 'What is wrong: one sentence, or one per invalid field',
    example: ['query must not be empty'],
  })
  message!: string | string[];
}

/** The 429 body: the caller's budget (RATE_LIMIT_PER_MINUTE) is spent for now. */
export class RateLimitExceededDto {
  @ApiProperty({ type: 'integer', enum: [429], example: 429 })
  statusCode!: 429;

  @ApiProperty({ type: 'string', enum: ['Too Many Requests'], example: 'Too Many Requests' })
  error!: 'Too Many Requests';

  @ApiProperty({ example: 'Rate limit reached: 120 requests a minute; retry in 17 s' })
  message!: string;

  @ApiProperty({ type: 'integer', minimum: 1, description: 'The same as the Retry-After header' })
  retryAfterSeconds!: number;
}
