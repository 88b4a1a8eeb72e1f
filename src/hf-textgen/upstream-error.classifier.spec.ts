import { describe, expect, it } from '@jest/globals';
import { InferenceClientProviderApiError, InferenceClientProviderOutputError } from '@huggingface/inference';
import { LocalResourceError, modelFailureVerdict, ModelCallFailedError, ModelRequestRejectedError } from './hf-textgen.errors.js';
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
        'vLLM’s flat ErrorResponse, its text at a top-level message, the completion alone over the context length',
        400,
        {
          object: 'error',
          message:
            "'max_tokens' or 'max_completion_tokens' is too large: 8192. This model's maximum context length is 4096 tokens and your request has 25 input tokens (8192 > 4096 - 25).",
          type: 'BadRequestError',
          param: null,
          code: 400,
        },
      ],
      [
        'vLLM’s nested ErrorResponse in its current wording, the completion alone over the context length',
        400,
        {
          error: {
            message:
              "'max_tokens' or 'max_completion_tokens' is too large: 8192. This model's maximum context length is 4096 tokens and your request has 25 input tokens (8192 > 4096 - 25). None",
            type: 'BadRequestError',
            param: null,
            code: 400,
          },
        },
      ],
      [
        'vLLM’s flat ErrorResponse in its older wording, the completion alone over the context length',
        400,
        {
          object: 'error',
          message:
            "This model's maximum context length is 4096 tokens. However, you requested 8292 tokens (100 in the messages, 8192 in the completion). Please reduce the length of the messages or completion.",
          type: 'BadRequestError',
          param: null,
          code: 400,
        },
      ],
      [
        'OpenAI’s context_length_exceeded wording, the completion alone over the context length',
        400,
        {
          error: {
            message:
              "This model's maximum context length is 4097 tokens. However, you requested 8354 tokens (162 in your prompt; 8192 for the completion). Please reduce your prompt; or completion length.",
            type: 'invalid_request_error',
            param: 'messages',
            code: 'context_length_exceeded',
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
      [
        'vLLM’s current wording when this prompt leaves too little room for the completion',
        {
          object: 'error',
          message:
            "'max_tokens' or 'max_completion_tokens' is too large: 512. This model's maximum context length is 4096 tokens and your request has 3700 input tokens (512 > 4096 - 3700).",
          type: 'BadRequestError',
          param: null,
          code: 400,
        },
      ],
      [
        'vLLM: this prompt alone over the context length',
        {
          object: 'error',
          message:
            "This model's maximum context length is 4096 tokens. However, your request has 5000 input tokens. Please reduce the length of the input messages.",
          type: 'BadRequestError',
          param: null,
          code: 400,
        },
      ],
      [
        'OpenAI’s context_length_exceeded wording when the prompt is what is too long',
        {
          error: {
            message:
              "This model's maximum context length is 4097 tokens. However, you requested 4512 tokens (4000 in your prompt; 512 for the completion). Please reduce your prompt; or completion length.",
            type: 'invalid_request_error',
            param: 'messages',
            code: 'context_length_exceeded',
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

    it('quotes the top-level message of a flat error body, as vLLM sends it', () => {
      const error = classifyUpstreamError(
        httpError(400, { object: 'error', message: 'temperature must be non-negative', type: 'BadRequestError', param: null, code: 400 }),
      );
      expect(error).toBeInstanceOf(ModelRequestRejectedError);
      expect(error.message).toBe('The model rejected this request (400): temperature must be non-negative');
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

  describe('the Hub’s ratelimit header', () => {
    it('counts a 503 that still has requests left in its quota, without holding the circuit open for the window', () => {
      const error = classifyUpstreamError(httpError(503, { error: 'Model is overloaded', error_type: 'overloaded' }), {
        headers: new Headers({ ratelimit: '"api";r=489;t=189', 'ratelimit-policy': '"fixed window";"api";q=500;w=300' }),
      });
      expect(error).toMatchObject({ name: 'ModelCallFailedError', status: 503, retryAfterSeconds: undefined });
      expect(modelFailureVerdict(error)).toEqual({ counts: true, kind: 'http', status: 503 });
    });

    it('holds the circuit open for t seconds once no requests remain (r=0)', () => {
      const error = classifyUpstreamError(httpError(429, { error: 'Too many requests' }), {
        headers: new Headers({ ratelimit: '"api";r=0;t=55' }),
      });
      expect(modelFailureVerdict(error)).toEqual({ counts: true, kind: 'http', status: 429, holdOpenMs: 55_000 });
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

  describe('this replica out of file descriptors, sockets or memory', () => {
    /** What undici's fetch throws when the socket could not be made: the errno code is on the cause. */
    const socketError = (code: string) =>
      Object.assign(new Error(`connect ${code} 127.0.0.1:8080 - Local (undefined:undefined)`), { code });

    it.each(['EMFILE', 'ENFILE', 'ENOBUFS', 'EADDRNOTAVAIL', 'ENOMEM'])(
      'does not blame the model when fetch fails with %s: it counts neither way and says it is local',
      (code) => {
        const error = classifyUpstreamError(new TypeError('fetch failed', { cause: socketError(code) }));
        expect(error).toBeInstanceOf(LocalResourceError);
        expect(error).toMatchObject({ name: 'LocalResourceError', code });
        expect(modelFailureVerdict(error)).toEqual({ counts: false, local: true });
      },
    );

    it('finds the code one level deeper, on the cause’s own cause', () => {
      const wrapped = new Error('connection failed', { cause: socketError('EMFILE') });
      const error = classifyUpstreamError(new TypeError('fetch failed', { cause: wrapped }));
      expect(error).toMatchObject({ name: 'LocalResourceError', code: 'EMFILE' });
    });

    it('blames this replica for an AggregateError (each address tried in turn) only when every attempt ran short here', () => {
      const short = new AggregateError([socketError('EADDRNOTAVAIL'), socketError('EMFILE')], 'connect failed');
      expect(classifyUpstreamError(new TypeError('fetch failed', { cause: short }))).toMatchObject({ code: 'EADDRNOTAVAIL' });
      expect(classifyUpstreamError(short)).toMatchObject({ name: 'LocalResourceError', code: 'EADDRNOTAVAIL' });
      // Wrapped as deep as the causes are followed: the attempts are the aggregate's parts, read at its depth.
      const deep = new TypeError('fetch failed', { cause: new Error('a', { cause: new Error('b', { cause: short }) }) });
      expect(classifyUpstreamError(deep)).toMatchObject({ name: 'LocalResourceError', code: 'EADDRNOTAVAIL' });
      // IPv4 refused, IPv6 without an address (a pod without IPv6): the endpoint is down, whichever attempt came first.
      for (const attempts of [
        [socketError('ECONNREFUSED'), socketError('EADDRNOTAVAIL')],
        [socketError('EADDRNOTAVAIL'), socketError('ECONNREFUSED')],
      ]) {
        const mixed = Object.assign(new AggregateError(attempts, 'connect failed'), { code: attempts[0].code });
        expect(classifyUpstreamError(new TypeError('fetch failed', { cause: mixed }))).toBeInstanceOf(ModelCallFailedError);
      }
    });

    it('still blames the model endpoint when every attempt of an AggregateError was refused', () => {
      const attempts = new AggregateError([socketError('ECONNREFUSED'), socketError('ECONNREFUSED')], 'connect failed');
      const error = classifyUpstreamError(new TypeError('fetch failed', { cause: attempts }));
      expect(error).toMatchObject({ name: 'ModelCallFailedError', kind: 'network' });
      expect(modelFailureVerdict(error).counts).toBe(true);
    });

    it.each<[string, unknown]>([
      ['a RangeError “Array buffer allocation failed”', new RangeError('Array buffer allocation failed')],
      [
        'the same RangeError as a fetch failure’s cause',
        new TypeError('fetch failed', { cause: new RangeError('Array buffer allocation failed') }),
      ],
      [
        'Node’s ERR_MEMORY_ALLOCATION_FAILED',
        Object.assign(new Error('Failed to allocate memory'), { code: 'ERR_MEMORY_ALLOCATION_FAILED' }),
      ],
      ['a RangeError from another realm, known by its name', foreignError('RangeError', 'Array buffer allocation failed')],
    ])('does not blame the model for %s: the replica is out of memory', (_case, thrown) => {
      const error = classifyUpstreamError(thrown);
      expect(error).toMatchObject({ name: 'LocalResourceError', code: 'ERR_MEMORY_ALLOCATION_FAILED' });
      expect(modelFailureVerdict(error)).toEqual({ counts: false, local: true });
    });

    it('names the shortage and its code in the message', () => {
      const error = classifyUpstreamError(new TypeError('fetch failed', { cause: socketError('EMFILE') }));
      expect(error.message).toBe('The model was not called: this replica ran out of file descriptors (EMFILE)');
    });

    it('keeps blaming the model for a RangeError that is not about memory', () => {
      expect(classifyUpstreamError(new RangeError('Invalid string length'))).toMatchObject({
        name: 'ModelCallFailedError',
        kind: 'network',
      });
    });

    it('stops looking after a few levels, so a cause that points back at itself ends the search', () => {
      const looped: Error & { cause?: unknown } = new Error('loop');
      looped.cause = looped;
      expect(classifyUpstreamError(looped)).toMatchObject({ name: 'ModelCallFailedError', kind: 'network' });
    });
  });

  it('passes one of our own errors through unchanged', () => {
    const rejected = new ModelRequestRejectedError(413, 'too large');
    const failed = new ModelCallFailedError('protocol', 'no content');
    const local = new LocalResourceError('EMFILE', 'out of file descriptors');
    expect(classifyUpstreamError(rejected)).toBe(rejected);
    expect(classifyUpstreamError(failed)).toBe(failed);
    expect(classifyUpstreamError(local)).toBe(local);
  });
});
