import { describe, expect, it } from '@jest/globals';
import { InferenceClientProviderApiError, InferenceClientProviderOutputError } from '@huggingface/inference';
import { modelFailureVerdict, ModelCallFailedError, ModelRequestRejectedError } from './hf-textgen.errors.js';
import { classifyUpstreamError } from './upstream-error.classifier.js';

// What the client throws, built by hand for the shapes a real upstream rarely sends; the common ones go over HTTP in hf-textgen.service.spec.

type UpstreamBody = ConstructorParameters<typeof InferenceClientProviderApiError>[2]['body'];

function httpError(status: number, body: UpstreamBody): InferenceClientProviderApiError {
  return new InferenceClientProviderApiError(
    `Failed to perform inference: HTTP ${status}`,
    { url: 'http://127.0.0.1/v1/chat/completions', method: 'POST' },
    { requestId: '', status, body },
  );
}

/** An error as fetch makes it in another realm: the right name, but not an instance of this realm's classes. */
function foreignError(name: string, message: string, cause?: unknown): Error {
  const error = new Error(message, { cause });
  error.name = name;
  return error;
}

describe('classifyUpstreamError', () => {
  describe('a 4xx that blames the deployment, not the prompt (every request fails alike)', () => {
    it.each<[string, number, UpstreamBody]>([
      ['TGI’s template error', 422, { error: 'Template error: template not found', error_type: 'template_error' }],
      [
        'TGI: max_new_tokens alone at or over the total limit',
        422,
        {
          error:
            'Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 12 `inputs` tokens and 8192 `max_new_tokens`',
          error_type: 'validation',
        },
      ],
      [
        'TGI’s declared max_new_tokens limit',
        422,
        { error: 'Input validation error: `max_new_tokens` must be <= 2048. Given: 4096', error_type: 'validation' },
      ],
      [
        'vLLM: the completion alone over the context length',
        400,
        {
          error: {
            message:
              "This model's maximum context length is 4096 tokens. However, you requested 8292 tokens (100 in the messages, 8192 in the completion). Please reduce the length of the messages or completion.",
            type: 'BadRequestError',
          },
        },
      ],
      [
        'an OpenAI-style max_tokens over the model’s completion limit',
        400,
        {
          error: {
            message: 'max_tokens is too large: 8192. This model supports at most 4096 completion tokens, whereas you provided 8192.',
            type: 'invalid_request_error',
          },
        },
      ],
    ])('opens the circuit at once for %s', (_case, status, body) => {
      const error = classifyUpstreamError(httpError(status, body));
      expect(error).toBeInstanceOf(ModelCallFailedError);
      expect(modelFailureVerdict(error)).toMatchObject({ counts: true, opensAtOnce: true, status });
    });

    it.each<[string, UpstreamBody]>([
      [
        'TGI: this prompt’s tokens plus max_new_tokens over the limit',
        {
          error:
            'Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 200 `max_new_tokens`',
          error_type: 'validation',
        },
      ],
      [
        'vLLM: this prompt too long for the context',
        {
          error: {
            message:
              "This model's maximum context length is 4096 tokens. However, you requested 4296 tokens (4096 in the messages, 200 in the completion).",
            type: 'BadRequestError',
          },
        },
      ],
    ])('leaves %s to this request: it counts neither way', (_case, body) => {
      const error = classifyUpstreamError(httpError(422, body));
      expect(error).toBeInstanceOf(ModelRequestRejectedError);
      expect(modelFailureVerdict(error)).toEqual({ counts: false });
    });
  });

  describe('an HTTP error answer', () => {
    it('names the bare status when a 503 carries no message at all', () => {
      const error = classifyUpstreamError(httpError(503, {}));
      expect(error).toBeInstanceOf(ModelCallFailedError);
      expect(error.message).toBe('The model endpoint answered 503: HTTP 503');
      expect(modelFailureVerdict(error).counts).toBe(true);
    });

    it('quotes a plain-text body, trimmed, as the upstream’s reason', () => {
      const error = classifyUpstreamError(httpError(502, '  Bad Gateway from the load balancer \n'));
      expect(error.message).toBe('The model endpoint answered 502: Bad Gateway from the load balancer');
    });

    it('falls back to the status when the plain-text body is only white space', () => {
      const error = classifyUpstreamError(httpError(400, ' \n '));
      expect(error).toBeInstanceOf(ModelRequestRejectedError);
      expect(error.message).toBe('The model rejected this request (400): HTTP 400');
    });

    it('quotes the message of an OpenAI-style error object', () => {
      const error = classifyUpstreamError(
        httpError(422, { error: { message: 'messages must contain at least one user message', type: 'invalid_request' } }),
      );
      expect(error).toBeInstanceOf(ModelRequestRejectedError);
      expect(error.message).toBe('The model rejected this request (422): messages must contain at least one user message');
    });

    it('falls back to the status when the error object has no text message', () => {
      const error = classifyUpstreamError(httpError(500, { error: { code: 'internal', message: 42 } }));
      expect(error.message).toBe('The model endpoint answered 500: HTTP 500');
    });

    it('keeps the upstream’s wait hint from the response headers', () => {
      const error = classifyUpstreamError(httpError(429, { error: 'Rate limit reached' }), {
        headers: new Headers({ 'retry-after': '12' }),
      });
      expect(error).toMatchObject({ name: 'ModelCallFailedError', kind: 'http', status: 429, retryAfterSeconds: 12 });
      expect(error.message).toBe('The model endpoint answered 429: Rate limit reached');
    });
  });

  describe('a call that got no HTTP answer', () => {
    it('reports a time-out when the call’s signal was aborted, whatever fetch threw', () => {
      const controller = new AbortController();
      controller.abort();
      const error = classifyUpstreamError(new TypeError('fetch failed'), { signal: controller.signal });
      expect(error).toMatchObject({ name: 'ModelCallFailedError', kind: 'timeout' });
    });

    it.each(['AbortError', 'TimeoutError'])('reports a time-out for an error named %s from another realm', (name) => {
      expect(classifyUpstreamError(foreignError(name, 'The operation was aborted'))).toMatchObject({ kind: 'timeout' });
    });

    it('reports a protocol failure, quoting the parser, for a body that is not JSON', () => {
      const error = classifyUpstreamError(foreignError('SyntaxError', 'Unexpected token < in JSON at position 0'));
      expect(error).toMatchObject({ kind: 'protocol' });
      expect(error.message).toBe('The model sent a response that is not a chat completion: Unexpected token < in JSON at position 0');
    });

    it('reports a protocol failure for a completion the client found malformed', () => {
      const error = classifyUpstreamError(new InferenceClientProviderOutputError('Expected ChatCompletionOutput'));
      expect(error).toMatchObject({ kind: 'protocol' });
      expect(error.message).toContain('Expected ChatCompletionOutput');
    });

    it('describes a SyntaxError-named value without a text message by its string form', () => {
      const thrown = { name: 'SyntaxError', message: undefined, toString: () => 'SyntaxError: bad chunk' };
      expect(classifyUpstreamError(thrown).message).toBe('The model sent a response that is not a chat completion: SyntaxError: bad chunk');
    });

    it('names the socket error code of a refused connection', () => {
      const refused = new TypeError('fetch failed', {
        cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }),
      });
      const error = classifyUpstreamError(refused);
      expect(error).toMatchObject({ name: 'ModelCallFailedError', kind: 'network' });
      expect(error.message).toBe('The model endpoint could not be reached: ECONNREFUSED');
    });

    it('quotes the cause’s message when it has no error code', () => {
      const error = classifyUpstreamError(new TypeError('fetch failed', { cause: new Error('other side closed') }));
      expect(error.message).toBe('The model endpoint could not be reached: other side closed');
    });

    it('quotes the error’s own message when it has no cause', () => {
      const error = classifyUpstreamError(new TypeError('terminated'));
      expect(error.message).toBe('The model endpoint could not be reached: terminated');
    });

    it('describes a thrown value that is not an error by its string form', () => {
      const error = classifyUpstreamError('socket hang up');
      expect(error).toMatchObject({ kind: 'network' });
      expect(error.message).toBe('The model endpoint could not be reached: socket hang up');
      expect(classifyUpstreamError(null).message).toBe('The model endpoint could not be reached: null');
    });
  });

  it('passes one of our own errors through unchanged', () => {
    const rejected = new ModelRequestRejectedError(413, 'too large');
    const failed = new ModelCallFailedError('protocol', 'no content');
    expect(classifyUpstreamError(rejected)).toBe(rejected);
    expect(classifyUpstreamError(failed)).toBe(failed);
  });
});
