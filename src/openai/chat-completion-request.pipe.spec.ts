import { describe, expect, it } from '@jest/globals';
import { ChatCompletionRequestPipe } from './chat-completion-request.pipe.js';
import { InvalidChatRequestError } from './openai.errors.js';

const MAX_QUERY_LENGTH = 40;
const pipe = new ChatCompletionRequestPipe({ maxQueryLength: MAX_QUERY_LENGTH, deadlineMs: 30_000, hedgeAfterMs: 0, coalesce: true });

/** The error the pipe refuses `body` with, as its fields. */
function refusal(body: unknown): Pick<InvalidChatRequestError, 'param' | 'code' | 'message'> {
  try {
    pipe.transform(body);
  } catch (error) {
    if (!(error instanceof InvalidChatRequestError)) throw error;
    return { param: error.param, code: error.code, message: error.message };
  }
  throw new Error('expected the pipe to refuse the body');
}

describe('ChatCompletionRequestPipe', () => {
  it('takes the last user message as the question, whatever comes after or before it', () => {
    const body = {
      messages: [
        { role: 'system', content: 'Answer briefly.' },
        { role: 'user', content: 'first question' },
        { role: 'assistant', content: null, tool_calls: [] },
        { role: 'user', content: 'second question' },
        { role: 'assistant', content: 'a reply' },
      ],
    };
    expect(pipe.transform(body)).toEqual({ question: 'second question', stream: false });
  });

  it('joins the text parts of a content array with newlines and skips the other parts', () => {
    const content = [
      { type: 'text', text: 'What does' },
      { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
      { type: 'text', text: 'half-open mean?' },
    ];
    expect(pipe.transform({ messages: [{ role: 'user', content }] }).question).toBe('What does\nhalf-open mean?');
  });

  it('streams only with stream: true, and takes null for any optional field as not given', () => {
    const messages = [{ role: 'user', content: 'q' }];
    expect(pipe.transform({ messages, stream: true }).stream).toBe(true);
    expect(pipe.transform({ messages, stream: null, model: null, max_tokens: null, temperature: null })).toEqual({
      question: 'q',
      stream: false,
    });
  });

  it('accepts the optional fields in their ranges and ignores every field it does not use', () => {
    const body = { messages: [{ role: 'user', content: 'q' }], model: 'gpt-4o', max_tokens: 1, temperature: 2, n: 3, topK: 99, user: 'u' };
    expect(pipe.transform(body)).toEqual({ question: 'q', stream: false });
    expect(pipe.transform({ ...body, temperature: 0 }).question).toBe('q');
  });

  it('counts ASSISTANT_MAX_QUERY_LENGTH on the question alone, not on the other messages', () => {
    const long = 'x'.repeat(MAX_QUERY_LENGTH + 1);
    expect(
      pipe.transform({
        messages: [
          { role: 'system', content: long },
          { role: 'user', content: 'x'.repeat(MAX_QUERY_LENGTH) },
        ],
      }).question,
    ).toHaveLength(MAX_QUERY_LENGTH);
    expect(
      refusal({
        messages: [
          { role: 'user', content: 'short' },
          { role: 'user', content: long },
        ],
      }),
    ).toEqual({
      param: 'messages[1].content',
      code: 'string_above_max_length',
      message: `Invalid 'messages[1].content': string too long. Expected a string with maximum length ${MAX_QUERY_LENGTH}, but got a string with length ${MAX_QUERY_LENGTH + 1} instead.`,
    });
  });

  it.each([
    ['a body that is not an object', 'hello', null, 'invalid_type'],
    ['a null body', null, null, 'invalid_type'],
    ['no messages', {}, 'messages', 'missing_required_parameter'],
    ['null messages', { messages: null }, 'messages', 'missing_required_parameter'],
    ['messages as an object', { messages: { role: 'user' } }, 'messages', 'invalid_type'],
    ['an empty messages array', { messages: [] }, 'messages', 'empty_array'],
    ['a message that is a string', { messages: ['hello'] }, 'messages[0]', 'invalid_type'],
    ['a message without a role', { messages: [{ content: 'hello' }] }, 'messages[0].role', 'missing_required_parameter'],
    ['an unknown role', { messages: [{ role: 'robot', content: 'hello' }] }, 'messages[0].role', 'invalid_value'],
    ['a role that is a number', { messages: [{ role: 1, content: 'hello' }] }, 'messages[0].role', 'invalid_value'],
    ['a user message without content', { messages: [{ role: 'user' }] }, 'messages[0].content', 'missing_required_parameter'],
    ['content that is a number', { messages: [{ role: 'user', content: 42 }] }, 'messages[0].content', 'invalid_type'],
    ['a content part that is a string', { messages: [{ role: 'user', content: ['hi'] }] }, 'messages[0].content[0]', 'invalid_type'],
    [
      'a content part without a type',
      { messages: [{ role: 'user', content: [{ text: 'hi' }] }] },
      'messages[0].content[0].type',
      'invalid_type',
    ],
    [
      'a text part without text',
      { messages: [{ role: 'user', content: [{ type: 'text', text: 7 }] }] },
      'messages[0].content[0].text',
      'invalid_type',
    ],
    ['no user message', { messages: [{ role: 'system', content: 'hi' }] }, 'messages', 'invalid_value'],
    ['a blank question', { messages: [{ role: 'user', content: ' \n ' }] }, 'messages[0].content', 'invalid_value'],
    [
      'a question of images only',
      { messages: [{ role: 'user', content: [{ type: 'image_url' }] }] },
      'messages[0].content',
      'invalid_value',
    ],
    ['a model that is a number', { messages: [{ role: 'user', content: 'q' }], model: 4 }, 'model', 'invalid_type'],
    ['a stream flag that is a string', { messages: [{ role: 'user', content: 'q' }], stream: 'true' }, 'stream', 'invalid_type'],
    ['max_tokens that is a fraction', { messages: [{ role: 'user', content: 'q' }], max_tokens: 1.5 }, 'max_tokens', 'invalid_type'],
    ['max_tokens of 0', { messages: [{ role: 'user', content: 'q' }], max_tokens: 0 }, 'max_tokens', 'value_below_minimum'],
    ['a temperature that is a string', { messages: [{ role: 'user', content: 'q' }], temperature: '1' }, 'temperature', 'invalid_type'],
    ['a negative temperature', { messages: [{ role: 'user', content: 'q' }], temperature: -0.1 }, 'temperature', 'value_below_minimum'],
    ['a temperature above 2', { messages: [{ role: 'user', content: 'q' }], temperature: 2.5 }, 'temperature', 'value_above_maximum'],
  ])('refuses %s, naming the field', (_case, body, param, code) => {
    expect(refusal(body)).toMatchObject({ param, code });
  });

  it('says what it got in a type error', () => {
    expect(refusal({ messages: 'hello' }).message).toBe("Invalid type for 'messages': expected an array, but got a string instead.");
    expect(refusal({ messages: [{ role: 'user', content: 'q' }], temperature: null, stream: [] }).message).toBe(
      "Invalid type for 'stream': expected a boolean, but got an array instead.",
    );
    expect(refusal({ messages: [null] }).message).toBe("Invalid type for 'messages[0]': expected an object, but got null instead.");
  });
});
