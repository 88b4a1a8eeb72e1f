import { randomUUID } from 'node:crypto';
import type { AssistantAnswerDto } from '../assistant/assistant-answer.dto.js';
import type { AnswerEvent } from '../assistant/answer-events.js';
import type { AnswerEventFormatter } from '../assistant/server-sent-events.js';
import type { AssistantExtensionDto, ChatCompletionChunkDto, ChatCompletionDeltaDto, ChatCompletionDto } from './openai.dto.js';

/** The stream's last event, after which an OpenAI client stops reading. */
export const DONE_EVENT = 'data: [DONE]\n\n';

/**
 * An answer as OpenAI's `chat.completion`, named for the target that wrote it (`firstModel`, the first target, when
 * none did), with the answer's provenance beside it.
 */
export function chatCompletion(answer: AssistantAnswerDto, firstModel: string): ChatCompletionDto {
  return {
    id: completionId(),
    object: 'chat.completion',
    created: unixSeconds(),
    model: answer.model ?? firstModel,
    choices: [{ index: 0, message: { role: 'assistant', content: answer.answer }, finish_reason: 'stop' }],
    assistant: assistantExtension(answer),
  };
}

/**
 * A formatter for one streamed answer's events as `chat.completion.chunk` events: the role first (with the first token,
 * once the target writing it is known: every chunk names that one), a content delta per token, then a last chunk
 * with `finish_reason` and the `assistant` object, and `data: [DONE]`. An answer that came without tokens (a
 * fallback) is sent as one content delta before the last chunk, named for `firstModel`, the first target. The excerpts
 * have no place in OpenAI's deltas: they come in the last chunk's `assistant` object.
 */
export function chatCompletionChunks(firstModel: string): AnswerEventFormatter {
  const id = completionId();
  const created = unixSeconds();
  let model = firstModel;
  let roleSent = false;
  let contentSent = false;
  const chunk = (delta: ChatCompletionDeltaDto, assistant?: AssistantExtensionDto): string => {
    const body: ChatCompletionChunkDto = {
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [{ index: 0, delta, finish_reason: assistant ? 'stop' : null }],
      ...(assistant ? { assistant } : {}),
    };
    return `data: ${JSON.stringify(body)}\n\n`;
  };
  const role = (): string => {
    if (roleSent) return '';
    roleSent = true;
    return chunk({ role: 'assistant', content: '' });
  };
  const content = (text: string): string => {
    if (text === '') return '';
    contentSent = true;
    return chunk({ content: text });
  };
  return (event: AnswerEvent): string => {
    switch (event.type) {
      case 'excerpts':
        return '';
      case 'token':
        if (!roleSent && event.model !== undefined) model = event.model;
        return role() + content(event.text);
      case 'done':
        if (!roleSent && event.answer.model !== undefined) model = event.answer.model;
        return role() + (contentSent ? '' : content(event.answer.answer)) + chunk({}, assistantExtension(event.answer)) + DONE_EVENT;
    }
  };
}

function assistantExtension({ answer: _answer, coalesced: _coalesced, ...provenance }: AssistantAnswerDto): AssistantExtensionDto {
  return provenance;
}

function completionId(): string {
  return `chatcmpl-${randomUUID()}`;
}

function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
