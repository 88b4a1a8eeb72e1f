import { ApiExtraModels, ApiProperty, ApiPropertyOptional, getSchemaPath, OmitType } from '@nestjs/swagger';
import { AssistantAnswerDto } from '../assistant/assistant-answer.dto.js';
import { CHAT_ROLES } from './chat-completion-request.pipe.js';

// The shapes of OpenAI's Chat Completions and Models APIs that this service speaks, for the OpenAPI document; the 200
// bodies are also written from them (documented-response.serializers.ts), so each field sent is declared here.

export class ChatContentPartDto {
  @ApiProperty({ example: 'text', description: "Only 'text' parts are read; others (images, audio) are ignored" })
  type!: string;

  @ApiPropertyOptional({ example: 'What does half-open mean?' })
  text?: string;
}

@ApiExtraModels(ChatContentPartDto)
export class ChatMessageDto {
  @ApiProperty({ type: 'string', enum: CHAT_ROLES, example: 'user' })
  role!: string;

  @ApiPropertyOptional({
    oneOf: [{ type: 'string' }, { type: 'array', items: { $ref: getSchemaPath(ChatContentPartDto) } }],
    nullable: true,
    description: 'A string, or content parts whose text parts are joined; required on user messages',
    example: 'What does half-open mean?',
  })
  content?: string | ChatContentPartDto[] | null;
}

/** The body of POST /v1/chat/completions; fields not listed here are accepted and ignored. */
export class ChatCompletionRequestDto {
  @ApiProperty({ type: [ChatMessageDto], minItems: 1, description: 'The conversation; the last user message is the question' })
  messages!: ChatMessageDto[];

  @ApiPropertyOptional({ description: 'Ignored: the configured model (HF_MODEL) answers, and the response names it' })
  model?: string;

  @ApiPropertyOptional({ default: false, description: 'true: chat.completion.chunk events (text/event-stream), ending with data: [DONE]' })
  stream?: boolean;

  @ApiPropertyOptional({ type: 'integer', minimum: 1, description: 'Checked, then not used: HF_MAX_NEW_TOKENS applies' })
  max_tokens?: number;

  @ApiPropertyOptional({ minimum: 0, maximum: 2, description: 'Checked, then not used: HF_TEMPERATURE applies' })
  temperature?: number;
}

/**
 * What the assistant adds to a completion (and to the last chunk of a stream): the answer's provenance. A coalesced
 * answer is the same completion as its leader's: `coalesced` is not part of OpenAI's shape here.
 */
export class AssistantExtensionDto extends OmitType(AssistantAnswerDto, ['answer', 'coalesced'] as const) {}

export class ChatCompletionMessageDto {
  @ApiProperty({ type: 'string', enum: ['assistant'] })
  role!: 'assistant';

  @ApiProperty({ description: "The assistant's answer" })
  content!: string;
}

export class ChatCompletionChoiceDto {
  @ApiProperty({ type: 'integer', enum: [0] })
  index!: 0;

  @ApiProperty({ type: ChatCompletionMessageDto })
  message!: ChatCompletionMessageDto;

  @ApiProperty({ type: 'string', enum: ['stop'] })
  finish_reason!: 'stop';
}

/** The 200 body of POST /v1/chat/completions without `stream: true`. */
export class ChatCompletionDto {
  @ApiProperty({ example: 'chatcmpl-3b241101-e2bb-4255-8caf-4136c566a962' })
  id!: string;

  @ApiProperty({ type: 'string', enum: ['chat.completion'] })
  object!: 'chat.completion';

  @ApiProperty({ type: 'integer', description: 'Unix time in seconds' })
  created!: number;

  @ApiProperty({ description: 'The configured model (HF_MODEL), whatever the request named', example: 'meta-llama/Llama-3.1-8B-Instruct' })
  model!: string;

  @ApiProperty({ type: [ChatCompletionChoiceDto], minItems: 1, maxItems: 1 })
  choices!: ChatCompletionChoiceDto[];

  @ApiProperty({ type: AssistantExtensionDto })
  assistant!: AssistantExtensionDto;
}

export class ChatCompletionDeltaDto {
  @ApiPropertyOptional({ type: 'string', enum: ['assistant'], description: 'On the first chunk only' })
  role?: 'assistant';

  @ApiPropertyOptional({ description: 'The next piece of the answer' })
  content?: string;
}

export class ChatCompletionChunkChoiceDto {
  @ApiProperty({ type: 'integer', enum: [0] })
  index!: 0;

  @ApiProperty({ type: ChatCompletionDeltaDto })
  delta!: ChatCompletionDeltaDto;

  @ApiProperty({ type: 'string', enum: ['stop', null], nullable: true, description: "'stop' on the last chunk, null before" })
  finish_reason!: 'stop' | null;
}

/** One `data:` event of a streamed completion. */
export class ChatCompletionChunkDto {
  @ApiProperty({ description: 'The same on every chunk of one stream' })
  id!: string;

  @ApiProperty({ type: 'string', enum: ['chat.completion.chunk'] })
  object!: 'chat.completion.chunk';

  @ApiProperty({ type: 'integer', description: 'Unix time in seconds; the same on every chunk of one stream' })
  created!: number;

  @ApiProperty()
  model!: string;

  @ApiProperty({ type: [ChatCompletionChunkChoiceDto], minItems: 1, maxItems: 1 })
  choices!: ChatCompletionChunkChoiceDto[];

  @ApiPropertyOptional({ type: AssistantExtensionDto, description: 'On the last chunk only' })
  assistant?: AssistantExtensionDto;
}

export class ModelDto {
  @ApiProperty({ description: 'The configured model (HF_MODEL)', example: 'meta-llama/Llama-3.1-8B-Instruct' })
  id!: string;

  @ApiProperty({ type: 'string', enum: ['model'] })
  object!: 'model';

  @ApiProperty({ type: 'integer', description: 'Unix time in seconds: when this replica started' })
  created!: number;

  @ApiProperty({ description: "The model id's organisation (before the /), else huggingface", example: 'meta-llama' })
  owned_by!: string;
}

/** The 200 body of GET /v1/models. */
export class ModelListDto {
  @ApiProperty({ type: 'string', enum: ['list'] })
  object!: 'list';

  @ApiProperty({ type: [ModelDto] })
  data!: ModelDto[];
}

export class OpenAiErrorDto {
  @ApiProperty({ example: "Missing required parameter: 'messages'." })
  message!: string;

  @ApiProperty({ example: 'invalid_request_error', description: 'invalid_request_error, requests (429) or server_error' })
  type!: string;

  @ApiProperty({ type: 'string', nullable: true, example: 'messages', description: 'The request field at fault, if one is' })
  param!: string | null;

  @ApiProperty({
    type: 'string',
    nullable: true,
    example: 'missing_required_parameter',
    description: 'invalid_api_key (401), rate_limit_exceeded (429), service_unavailable (503), or what is wrong with `param`',
  })
  code!: string | null;
}

/** Every error under /v1, in OpenAI's shape. */
export class OpenAiErrorResponseDto {
  @ApiProperty({ type: OpenAiErrorDto })
  error!: OpenAiErrorDto;
}
