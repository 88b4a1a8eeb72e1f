import { describe, expect, it } from '@jest/globals';
import type { AssistantAnswerDto } from '../assistant/assistant-answer.dto.js';
import type { AnswerEvent } from '../assistant/answer-events.js';
import { chatCompletion, chatCompletionChunks, DONE_EVENT } from './chat-completion.formatter.js';
import type { ChatCompletionChunkDto } from './openai.dto.js';

const MODEL = 'org/model';
const EXCERPT = { documentId: 'circuit-breaker', title: 'Half-open', text: 'One trial call.', score: 1.5 };

function answer(overrides: Partial<AssistantAnswerDto> = {}): AssistantAnswerDto {
  return {
    answer: 'One trial call goes through.',
    source: 'llm',
    degraded: false,
    fallbackReason: null,
    excerpts: [EXCERPT],
    circuit: { name: 'huggingface', state: 'closed' },
    ...overrides,
  };
}

/** The events the formatter writes for `events`, parsed; [DONE] as the string. */
function format(events: AnswerEvent[]): Array<ChatCompletionChunkDto | '[DONE]'> {
  const formatChunk = chatCompletionChunks(MODEL);
  const text = events.map(formatChunk).join('');
  expect(text.endsWith('\n\n')).toBe(true);
  return text
    .split('\n\n')
    .filter((event) => event !== '')
    .map((event) => {
      expect(event.startsWith('data: ')).toBe(true);
      const data = event.slice('data: '.length);
      return data === '[DONE]' ? data : (JSON.parse(data) as ChatCompletionChunkDto);
    });
}

const deltas = (chunks: Array<ChatCompletionChunkDto | '[DONE]'>) =>
  chunks.map((chunk) => (chunk === '[DONE]' ? chunk : { delta: chunk.choices[0]?.delta, finish: chunk.choices[0]?.finish_reason }));

describe('chatCompletion', () => {
  it('is a chat.completion with the answer as the message and everything else in assistant', () => {
    const completion = chatCompletion(answer({ source: 'cache', cachedAt: '2026-01-01T00:00:00.000Z' }), MODEL);
    expect(completion).toEqual({
      id: expect.stringMatching(/^chatcmpl-/),
      object: 'chat.completion',
      created: expect.any(Number),
      model: MODEL,
      choices: [{ index: 0, message: { role: 'assistant', content: 'One trial call goes through.' }, finish_reason: 'stop' }],
      assistant: {
        source: 'cache',
        degraded: false,
        fallbackReason: null,
        excerpts: [EXCERPT],
        circuit: { name: 'huggingface', state: 'closed' },
        cachedAt: '2026-01-01T00:00:00.000Z',
      },
    });
    expect(Number.isInteger(completion.created)).toBe(true);
  });
});

describe('chatCompletionChunks', () => {
  it('sends the role with the first token (nothing for the excerpts), a delta per token, then the last chunk with assistant, then [DONE]', () => {
    const chunks = format([
      { type: 'excerpts', excerpts: [EXCERPT] },
      { type: 'token', text: 'One trial ' },
      { type: 'token', text: 'call goes through.' },
      { type: 'done', answer: answer() },
    ]);
    expect(deltas(chunks)).toEqual([
      { delta: { role: 'assistant', content: '' }, finish: null },
      { delta: { content: 'One trial ' }, finish: null },
      { delta: { content: 'call goes through.' }, finish: null },
      { delta: {}, finish: 'stop' },
      '[DONE]',
    ]);
    const [first, ...rest] = chunks.slice(0, -1) as ChatCompletionChunkDto[];
    for (const chunk of rest)
      expect({ id: chunk.id, created: chunk.created, model: chunk.model }).toEqual({
        id: first?.id,
        created: first?.created,
        model: MODEL,
      });
    expect(chunks.at(-2)).toMatchObject({ assistant: { source: 'llm', degraded: false, excerpts: [EXCERPT] } });
    expect(chunks.at(-2)).not.toHaveProperty('assistant.answer');
    for (const chunk of chunks.slice(0, -2)) expect(chunk).not.toHaveProperty('assistant');
  });

  it('sends an answer that came without tokens (a fallback) as one content delta, the role first', () => {
    const fallback = answer({
      answer: 'The excerpts: …',
      source: 'excerpts',
      degraded: true,
      fallbackReason: 'circuit_open',
      retryAfterSeconds: 5,
    });
    const chunks = format([{ type: 'done', answer: fallback }]);
    expect(deltas(chunks)).toEqual([
      { delta: { role: 'assistant', content: '' }, finish: null },
      { delta: { content: 'The excerpts: …' }, finish: null },
      { delta: {}, finish: 'stop' },
      '[DONE]',
    ]);
    expect(chunks.at(-2)).toMatchObject({ assistant: { fallbackReason: 'circuit_open', retryAfterSeconds: 5 } });
  });

  it('ends an interrupted answer with its last chunk and [DONE], without sending the partial answer again', () => {
    const chunks = format([
      { type: 'excerpts', excerpts: [EXCERPT] },
      { type: 'token', text: 'One trial ' },
      { type: 'done', answer: answer({ answer: 'One trial ', degraded: true, fallbackReason: 'interrupted' }) },
    ]);
    expect(deltas(chunks).slice(1)).toEqual([{ delta: { content: 'One trial ' }, finish: null }, { delta: {}, finish: 'stop' }, '[DONE]']);
  });

  it('sends no empty content deltas', () => {
    const chunks = format([
      { type: 'token', text: '' },
      { type: 'token', text: 'hi' },
      { type: 'done', answer: answer({ answer: 'hi' }) },
    ]);
    expect(deltas(chunks)).toEqual([
      { delta: { role: 'assistant', content: '' }, finish: null },
      { delta: { content: 'hi' }, finish: null },
      { delta: {}, finish: 'stop' },
      '[DONE]',
    ]);
    expect(format([{ type: 'done', answer: answer({ answer: '' }) }]).length).toBe(3);
  });

  it('writes each stream under its own id', () => {
    const [a] = format([{ type: 'done', answer: answer() }]) as ChatCompletionChunkDto[];
    const [b] = format([{ type: 'done', answer: answer() }]) as ChatCompletionChunkDto[];
    expect(a?.id).not.toBe(b?.id);
    expect(DONE_EVENT).toBe('data: [DONE]\n\n');
  });
});
