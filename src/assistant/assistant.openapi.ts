import { applyDecorators } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiBearerAuth,
  ApiOkResponse,
  ApiOperation,
  ApiPayloadTooLargeResponse,
  ApiSecurity,
  ApiServiceUnavailableResponse,
  ApiTooManyRequestsResponse,
  ApiUnauthorizedResponse,
  ApiUnsupportedMediaTypeResponse,
} from '@nestjs/swagger';
import { AssistantAnswerDto, ErrorResponseDto, RateLimitExceededDto, UpstreamUnavailableDto } from './assistant-answer.dto.js';

/** With RATE_LIMIT_PER_MINUTE above 0, on every answer of the route, refused or not (IETF draft httpapi-ratelimit-headers). */
const RATE_LIMIT_HEADERS = {
  RateLimit: {
    description: 'With RATE_LIMIT_PER_MINUTE set: requests left (r) and seconds until the oldest counted one leaves the window (t)',
    schema: { type: 'string', example: '"default";r=119;t=60' },
  },
  'RateLimit-Policy': {
    description: 'With RATE_LIMIT_PER_MINUTE set: the limit (q) per window of w seconds',
    schema: { type: 'string', example: '"default";q=120;w=60' },
  },
} as const;

/** The contract of POST /assistant/query as OpenAPI sees it; kept here so the controller stays a list of routes. */
export function ApiAnswerResponses(): MethodDecorator {
  return applyDecorators(
    ApiOperation({
      summary: 'Answer a question from the knowledge base',
      description:
        'Answers come, in order, from a fresh cached answer, the model (with the top excerpts as context), a stale cached answer ' +
        'while the model is unavailable, the excerpts alone, and only with nothing left, 503 with Retry-After. ' +
        'With `Accept: text/event-stream` the answer is streamed as server-sent events: `excerpts` once, `token` events ' +
        '(`{"text"}`) as the model generates, and `done` last with the body of the 200 below; the 503 comes before any event.',
    }),
    ApiOkResponse({
      type: AssistantAnswerDto,
      description: 'An answer; `degraded: true` when the model did not give it',
      headers: RATE_LIMIT_HEADERS,
    }),
    ApiBearerAuth(),
    ApiSecurity('x-api-key'),
    ApiUnauthorizedResponse({
      type: ErrorResponseDto,
      description: 'With ASSISTANT_API_KEYS set: no key, or a wrong one (header WWW-Authenticate: Bearer)',
    }),
    ApiBadRequestResponse({
      type: ErrorResponseDto,
      description:
        'A missing, empty, non-string or over-long query, a topK that is not an integer 1..20, an unknown field, or malformed JSON',
    }),
    ApiTooManyRequestsResponse({
      type: RateLimitExceededDto,
      description:
        'With RATE_LIMIT_PER_MINUTE set: the API key (or, without keys, the client address) spent its budget for now; with ASSISTANT_API_KEYS: the client address failed too many key checks this minute',
      headers: {
        'Retry-After': { description: 'Seconds until a request will be admitted again', schema: { type: 'integer', minimum: 1 } },
        ...RATE_LIMIT_HEADERS,
      },
    }),
    ApiPayloadTooLargeResponse({ type: ErrorResponseDto, description: 'A body over 64 KiB' }),
    ApiUnsupportedMediaTypeResponse({ type: ErrorResponseDto, description: 'A body whose content type is not application/json' }),
    ApiServiceUnavailableResponse({
      type: UpstreamUnavailableDto,
      description: 'The model is unavailable and no cached answer or excerpt matches the question',
      headers: {
        'Retry-After': {
          description: 'Seconds until asking again could reach the model (rounded up, at least 1)',
          schema: { type: 'integer', minimum: 1 },
        },
      },
    }),
  );
}
