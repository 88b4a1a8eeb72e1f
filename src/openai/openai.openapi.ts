import { applyDecorators } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiBearerAuth,
  ApiBody,
  ApiExtraModels,
  ApiOkResponse,
  ApiOperation,
  ApiPayloadTooLargeResponse,
  ApiSecurity,
  ApiServiceUnavailableResponse,
  ApiTooManyRequestsResponse,
  ApiUnauthorizedResponse,
  ApiUnsupportedMediaTypeResponse,
  getSchemaPath,
} from '@nestjs/swagger';
import { ChatCompletionChunkDto, ChatCompletionDto, ChatCompletionRequestDto, ModelListDto, OpenAiErrorResponseDto } from './openai.dto.js';

const RETRY_AFTER = { description: 'Seconds to wait before retrying', schema: { type: 'integer', minimum: 1 } } as const;

/** Both /v1 routes: a key when ASSISTANT_API_KEYS is set. */
function ApiKeyResponses(): MethodDecorator {
  return applyDecorators(
    ApiBearerAuth(),
    ApiSecurity('x-api-key'),
    ApiUnauthorizedResponse({
      type: OpenAiErrorResponseDto,
      description: 'With ASSISTANT_API_KEYS set: no key, or a wrong one (code invalid_api_key; header WWW-Authenticate: Bearer)',
    }),
  );
}

/** The contract of POST /v1/chat/completions as OpenAPI sees it. */
export function ApiChatCompletionResponses(): MethodDecorator {
  return applyDecorators(
    ApiOperation({
      summary: 'Answer the last user message (OpenAI Chat Completions)',
      description:
        'The same answers as POST /assistant/query, in the shape of OpenAI Chat Completions: the last user message is the ' +
        'question; the configured model and generation parameters answer. What the assistant adds (source, degradation, ' +
        'excerpts, circuit) is in the `assistant` object and the x-assistant-* headers.',
    }),
    ApiExtraModels(ChatCompletionDto, ChatCompletionChunkDto),
    ApiBody({ type: ChatCompletionRequestDto }),
    ApiOkResponse({
      description: 'A completion; with `stream: true`, chat.completion.chunk events, the last with `assistant`, then `data: [DONE]`',
      headers: {
        'x-assistant-source': {
          description: 'Not streaming: where the answer came from',
          schema: { type: 'string', enum: ['llm', 'cache', 'excerpts'] },
        },
        'x-assistant-degraded': {
          description: 'Not streaming: true when the model did not give the answer',
          schema: { type: 'string', enum: ['true', 'false'] },
        },
      },
      content: {
        'application/json': { schema: { $ref: getSchemaPath(ChatCompletionDto) } },
        'text/event-stream': {
          schema: { type: 'string', description: 'Events `data: <a ChatCompletionChunkDto as JSON>`, then `data: [DONE]`' },
        },
      },
    }),
    ApiKeyResponses(),
    ApiBadRequestResponse({
      type: OpenAiErrorResponseDto,
      description: 'No messages, no user message, an empty or over-long question, a field of the wrong type or range, or malformed JSON',
    }),
    ApiTooManyRequestsResponse({
      type: OpenAiErrorResponseDto,
      description:
        'With RATE_LIMIT_PER_MINUTE set: the caller spent its budget for now; with ASSISTANT_API_KEYS: its address failed too many key checks this minute (code rate_limit_exceeded)',
      headers: { 'Retry-After': RETRY_AFTER },
    }),
    ApiPayloadTooLargeResponse({ type: OpenAiErrorResponseDto, description: 'A body over 64 KiB' }),
    ApiUnsupportedMediaTypeResponse({ type: OpenAiErrorResponseDto, description: 'A body whose content type is not application/json' }),
    ApiServiceUnavailableResponse({
      type: OpenAiErrorResponseDto,
      description: 'The model is unavailable and no cached answer or excerpt matches the question (code service_unavailable)',
      headers: { 'Retry-After': RETRY_AFTER },
    }),
  );
}

/** The contract of GET /v1/models. Not rate-limited: clients list models often, and it costs nothing. */
export function ApiModelListResponses(): MethodDecorator {
  return applyDecorators(
    ApiOperation({ summary: 'List the configured model (OpenAI Models)' }),
    ApiOkResponse({ type: ModelListDto, description: 'The configured model (HF_MODEL), the only one that answers' }),
    ApiKeyResponses(),
  );
}
