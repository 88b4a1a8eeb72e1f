import { Inject, Injectable, type PipeTransform } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { assistantConfig } from '../config/assistant.config.js';
import { InvalidChatRequestError } from './openai.errors.js';

/** What the service takes from a Chat Completions request: the question (the last user message's text) and how to send the answer. */
export interface ChatCompletionQuery {
  question: string;
  stream: boolean;
}

/** The roles OpenAI's API accepts; any of them may come before the question. */
export const CHAT_ROLES = ['system', 'developer', 'user', 'assistant', 'tool', 'function'] as const;
type ChatRole = (typeof CHAT_ROLES)[number];

interface ChatMessage {
  role: ChatRole;
  /** The text of its content: the string, or its text parts joined by newlines. */
  text: string;
}

type Body = Record<string, unknown>;

/**
 * Checks a Chat Completions body field by field and reads the question from it. Fields the service does not use are
 * ignored, as the contract says; `model`, `stream`, `max_tokens` and `temperature` are checked when given (the
 * configured generation parameters are what the service uses). Every refusal is an InvalidChatRequestError naming the
 * field. The global ValidationPipe leaves this body alone: the route declares it as an interface.
 */
@Injectable()
export class ChatCompletionRequestPipe implements PipeTransform<unknown, ChatCompletionQuery> {
  constructor(@Inject(assistantConfig.KEY) private readonly config: ConfigType<typeof assistantConfig>) {}

  transform(body: unknown): ChatCompletionQuery {
    if (!isRecord(body))
      throw new InvalidChatRequestError('The body must be a JSON object: a Chat Completions request', null, 'invalid_type');
    const messages = readMessages(body);
    checkOptional(body, 'model', 'a string', (value) => typeof value === 'string');
    checkOptional(body, 'stream', 'a boolean', (value) => typeof value === 'boolean');
    checkOptional(body, 'max_tokens', 'an integer', Number.isInteger);
    checkRange(body, 'max_tokens', 1, Number.MAX_SAFE_INTEGER);
    checkOptional(body, 'temperature', 'a number', (value) => typeof value === 'number' && Number.isFinite(value));
    checkRange(body, 'temperature', 0, 2);
    return { question: this.question(messages), stream: body['stream'] === true };
  }

  /** The last user message is the question; ASSISTANT_MAX_QUERY_LENGTH applies to it as to /assistant/query's query. */
  private question(messages: ChatMessage[]): string {
    const index = messages.findLastIndex((message) => message.role === 'user');
    const question = messages[index]?.text;
    if (question === undefined) {
      throw new InvalidChatRequestError(
        "'messages' must include a user message: the last one is the question",
        'messages',
        'invalid_value',
      );
    }
    const param = `messages[${index}].content`;
    if (question.trim() === '')
      throw new InvalidChatRequestError(`Invalid '${param}': the question must not be empty`, param, 'invalid_value');
    const max = this.config.maxQueryLength;
    if (question.length > max) {
      throw new InvalidChatRequestError(
        `Invalid '${param}': string too long. Expected a string with maximum length ${max}, but got a string with length ${question.length} instead.`,
        param,
        'string_above_max_length',
      );
    }
    return question;
  }
}

function readMessages(body: Body): ChatMessage[] {
  const messages = body['messages'];
  if (messages === undefined || messages === null) {
    throw new InvalidChatRequestError("Missing required parameter: 'messages'.", 'messages', 'missing_required_parameter');
  }
  if (!Array.isArray(messages)) throw wrongType('messages', 'an array', messages);
  if (messages.length === 0) {
    throw new InvalidChatRequestError(
      "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
      'messages',
      'empty_array',
    );
  }
  return messages.map((message: unknown, index) => readMessage(message, `messages[${index}]`));
}

function readMessage(message: unknown, param: string): ChatMessage {
  if (!isRecord(message)) throw wrongType(param, 'an object', message);
  const role = message['role'];
  if (role === undefined) {
    throw new InvalidChatRequestError(`Missing required parameter: '${param}.role'.`, `${param}.role`, 'missing_required_parameter');
  }
  if (!CHAT_ROLES.includes(role as ChatRole)) {
    throw new InvalidChatRequestError(
      `Invalid value for '${param}.role': ${JSON.stringify(role)}. Supported values are: ${CHAT_ROLES.map((r) => `'${r}'`).join(', ')}.`,
      `${param}.role`,
      'invalid_value',
    );
  }
  const content = message['content'];
  // Only a user message must have content: an assistant message may carry tool calls instead.
  if ((content === undefined || content === null) && role !== 'user') return { role: role as ChatRole, text: '' };
  return { role: role as ChatRole, text: readContent(content, `${param}.content`) };
}

/** A string, or an array of content parts of which the text parts count (images and the like are no question). */
function readContent(content: unknown, param: string): string {
  if (content === undefined || content === null) {
    throw new InvalidChatRequestError(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
  }
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw wrongType(param, 'a string or an array of content parts', content);
  const texts = content.map((part: unknown, index) => {
    const partParam = `${param}[${index}]`;
    if (!isRecord(part)) throw wrongType(partParam, 'an object', part);
    if (typeof part['type'] !== 'string') throw wrongType(`${partParam}.type`, 'a string', part['type']);
    if (part['type'] !== 'text') return undefined;
    if (typeof part['text'] !== 'string') throw wrongType(`${partParam}.text`, 'a string', part['text']);
    return part['text'];
  });
  return texts.filter((text) => text !== undefined).join('\n');
}

/** An optional field: absent and null are fine (OpenAI's clients send null for "not set"); anything else must pass `valid`. */
function checkOptional(body: Body, field: string, expected: string, valid: (value: unknown) => boolean): void {
  const value = body[field];
  if (value !== undefined && value !== null && !valid(value)) throw wrongType(field, expected, value);
}

function checkRange(body: Body, field: string, min: number, max: number): void {
  const value = body[field];
  if (typeof value !== 'number' || (value >= min && value <= max)) return;
  const [bound, code] =
    value < min ? [`greater than or equal to ${min}`, 'value_below_minimum'] : [`less than or equal to ${max}`, 'value_above_maximum'];
  throw new InvalidChatRequestError(`Invalid '${field}': ${value} is out of range. Expected a value ${bound}.`, field, code);
}

function wrongType(param: string, expected: string, value: unknown): InvalidChatRequestError {
  return new InvalidChatRequestError(
    `Invalid type for '${param}': expected ${expected}, but got ${typeName(value)} instead.`,
    param,
    'invalid_type',
  );
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  const type = typeof value;
  return type === 'object' ? 'an object' : `a ${type}`;
}

function isRecord(value: unknown): value is Body {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
