import { applyDecorators } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiBearerAuth,
  ApiOkResponse,
  ApiOperation,
  ApiPayloadTooLargeResponse,
  ApiSecurity,
  ApiServiceUnavailableResponse,
  ApiUnauthorizedResponse,
  ApiUnsupportedMediaTypeResponse,
} from '@nestjs/swagger';
import { AssistantAnswerDto, ErrorResponseDto, UpstreamUnavailableDto } from './assistant-answer.dto.js';

/** The contract of POST /assistant/query as OpenAPI sees it; kept here so the controller stays a list of routes. */
export function ApiAnswerResponses(): MethodDecorator {
  return applyDecorators(
    ApiOperation({
      summary: 'Answer a question from the knowledge base',
      description:
        'Answers come, in order, from a fresh cached answer, the model (with the top excerpts as context), a stale cached answer ' +
        'while the model is unavailable, the excerpts alone, and only with nothing left, 503 with Retry-After.',
    }),
    ApiOkResponse({ type: AssistantAnswerDto, description: 'An answer; `degraded: true` when the model did not give it' }),
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
