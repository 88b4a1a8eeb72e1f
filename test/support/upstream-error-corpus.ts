// Error answers as real upstreams send them (TGI, vLLM, the HF router, OpenAI-compatible servers), each with the
// verdict the contract ("What counts as a failure") gives it. test/upstream-error-corpus.e2e-spec.ts replays every one
// through the fake upstream into HfTextGenClient, so a shape is judged by the same client and classifier as in
// production. A new shape seen in the wild belongs here, with where it comes from.
import type { Fault, RawFault } from './fake-hf-upstream.js';

/** What the breaker acts on, as modelFailureVerdict gives it (kind and status left out). */
export type ExpectedVerdict = { counts: false; local?: true } | { counts: true; opensAtOnce?: true; holdOpenMs?: number };

/** A request-specific rejection: does not count, and as a half-open trial it closes the circuit. */
export const REJECTED: ExpectedVerdict = { counts: false };
/** The replica's own shortage: not the model's, counts neither way. */
export const LOCAL: ExpectedVerdict = { counts: false, local: true };
/** A failure toward the threshold. */
export const COUNTS: ExpectedVerdict = { counts: true };
/** Every request fails alike: the circuit opens without waiting for the threshold. */
export const OPENS_AT_ONCE: ExpectedVerdict = { counts: true, opensAtOnce: true };
/** A wait hint: the circuit opens at once for (at least) this long. */
export const holdsOpenFor = (seconds: number): ExpectedVerdict => ({ counts: true, holdOpenMs: seconds * 1000 });

export type CallPath = 'generate' | 'generateStream';
const BOTH: readonly CallPath[] = ['generate', 'generateStream'];
const STREAM_ONLY: readonly CallPath[] = ['generateStream'];

interface FixtureBase {
  /** The answer, as a noun phrase: the test name adds what it must do to the circuit. */
  shape: string;
  /** Where the body, its wording and its headers come from. */
  source: string;
  verdict: ExpectedVerdict;
  /** The service methods it is replayed through (an HTTP error answers a streaming request with the same JSON). */
  through: readonly CallPath[];
}

/** The fake upstream answers with this. */
export interface UpstreamAnswerFixture extends FixtureBase {
  upstream: Fault;
}

/** fetch itself rejects with this before any answer: what Node's fetch throws when this replica runs short. */
export interface FetchFailureFixture extends FixtureBase {
  fetchRejectsWith: () => unknown;
}

export type UpstreamErrorFixture = UpstreamAnswerFixture | FetchFailureFixture;

const TGI_SPEC = 'tgi-openapi.json (test/support, = /work/shared/upstream): ErrorResponse {error, error_type}';
const TGI_VALIDATION = `${TGI_SPEC}, 422 "Input validation error" (validation); wording of TGI router/src/validation.rs ValidationError`;
const VLLM_FLAT =
  "vLLM vllm/entrypoints/openai/protocol.py ErrorResponse, flat {object: 'error', message, type, param, code} (older releases)";
const VLLM_NESTED =
  'vLLM vllm/entrypoints/openai/protocol.py ErrorResponse {error: ErrorInfo {message, type, param, code}} (current releases)';
const VLLM_CURRENT_WORDING = "serving_engine.py _validate_input: \"'max_tokens' or 'max_completion_tokens' is too large: …\"";
const VLLM_OLDER_WORDING =
  'serving_engine.py _validate_input, older: "… However, you requested N tokens (P in the messages, C in the completion)"';
const ROUTER = '/work/shared/upstream/README.md (HF Inference Providers router facts)';
const OPENAI = 'OpenAI API error shape {error: {message, type, param, code}}';
const HUB_RATELIMIT = `${ROUTER}: the Hub's IETF-draft ratelimit header (draft-ietf-httpapi-ratelimit-headers: r = requests remaining, t = seconds to reset)`;
const UNDICI = "Node's fetch (undici): TypeError 'fetch failed' with the socket's system error (errno code) as its cause";

/** An answer with a JSON body (the fake sends it as application/json). */
function raw(status: number, body: object, headers: Record<string, string> = {}): RawFault {
  return { kind: 'raw', status, body, headers };
}

function socketError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:443 - Local (undefined:undefined)`), { code, syscall: 'connect' });
}

const tgiError = (error: string, errorType: string) => ({ error, error_type: errorType });
const vllmFlat = (message: string) => ({ object: 'error', message, type: 'BadRequestError', param: null, code: 400 });
const vllmNested = (message: string) => ({ error: { message, type: 'BadRequestError', param: null, code: 400 } });

/** HF_MAX_NEW_TOKENS=8192 against a model of 4096 tokens, in vLLM's current wording. */
const VLLM_BUDGET_OVER_LIMIT =
  "'max_tokens' or 'max_completion_tokens' is too large: 8192. This model's maximum context length is 4096 tokens and your request has 25 input tokens (8192 > 4096 - 25).";

export const UPSTREAM_ERROR_CORPUS: readonly UpstreamErrorFixture[] = [
  // TGI
  {
    shape: 'TGI’s 422 for a prompt whose tokens plus max_new_tokens exceed the total',
    source: TGI_VALIDATION,
    upstream: raw(
      422,
      tgiError(
        'Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 200 `max_new_tokens`',
        'validation',
      ),
    ),
    verdict: REJECTED,
    through: BOTH,
  },
  {
    shape: 'TGI’s 422 for a prompt over the input limit',
    source: TGI_VALIDATION,
    upstream: raw(422, tgiError('Input validation error: `inputs` must have less than 4095 tokens. Given: 5000', 'validation')),
    verdict: REJECTED,
    through: BOTH,
  },
  {
    shape: 'TGI’s 422 when max_new_tokens alone exceeds the total, whatever the prompt',
    source: TGI_VALIDATION,
    upstream: raw(
      422,
      tgiError(
        'Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 12 `inputs` tokens and 8192 `max_new_tokens`',
        'validation',
      ),
    ),
    verdict: OPENS_AT_ONCE,
    through: BOTH,
  },
  {
    shape: 'TGI’s 422 when max_new_tokens is over its own limit',
    source: TGI_VALIDATION,
    upstream: raw(422, tgiError('Input validation error: `max_new_tokens` must be <= 4096. Given: 8192', 'validation')),
    verdict: OPENS_AT_ONCE,
    through: BOTH,
  },
  {
    shape: 'TGI’s 422 template error (the model has no chat template)',
    source: `${TGI_SPEC}; TGI's InferError::TemplateError, error_type template_error`,
    upstream: raw(422, tgiError('Template error: template not found', 'template_error')),
    verdict: OPENS_AT_ONCE,
    through: BOTH,
  },
  {
    shape: 'TGI’s 424 generation error',
    source: `${TGI_SPEC}, the 424 example of /v1/chat/completions`,
    upstream: raw(424, tgiError('Request failed during generation', 'generation')),
    verdict: COUNTS,
    through: BOTH,
  },
  {
    shape: 'TGI’s 500 incomplete generation',
    source: `${TGI_SPEC}, the 500 example of /v1/chat/completions`,
    upstream: raw(500, tgiError('Incomplete generation', 'incomplete_generation')),
    verdict: COUNTS,
    through: BOTH,
  },
  {
    shape: 'a 500 generation error from CUDA running out of memory on the model’s GPU',
    source: `${TGI_SPEC}, error_type generation`,
    upstream: raw(500, tgiError('Request failed during generation: Server error: CUDA out of memory', 'generation')),
    verdict: COUNTS,
    through: BOTH,
  },
  {
    shape: 'TGI’s 429 overloaded without a wait hint',
    source: `${TGI_SPEC}, the 429 example of /v1/chat/completions; ${ROUTER}: 429 often comes without Retry-After`,
    upstream: raw(429, tgiError('Model is overloaded', 'overloaded')),
    verdict: COUNTS,
    through: BOTH,
  },
  {
    shape: 'a 503 overloaded without a wait hint',
    source: `${TGI_SPEC}, its "Model is overloaded" body answered with 503`,
    upstream: raw(503, tgiError('Model is overloaded', 'overloaded')),
    verdict: COUNTS,
    through: BOTH,
  },

  // vLLM
  {
    shape: 'vLLM’s flat 400 when max_tokens alone exceeds the context length (current wording)',
    source: `${VLLM_FLAT}; ${VLLM_CURRENT_WORDING}`,
    upstream: raw(400, vllmFlat(VLLM_BUDGET_OVER_LIMIT)),
    verdict: OPENS_AT_ONCE,
    through: BOTH,
  },
  {
    shape: 'vLLM’s nested 400 when max_tokens alone exceeds the context length (current wording)',
    source: `${VLLM_NESTED}; ${VLLM_CURRENT_WORDING} (its message ends in " None", as observed)`,
    upstream: raw(400, vllmNested(`${VLLM_BUDGET_OVER_LIMIT} None`)),
    verdict: OPENS_AT_ONCE,
    through: BOTH,
  },
  {
    shape: 'vLLM’s nested 400 when the completion alone exceeds the context length (older wording)',
    source: `${VLLM_NESTED}; ${VLLM_OLDER_WORDING}`,
    upstream: raw(
      400,
      vllmNested(
        "This model's maximum context length is 4096 tokens. However, you requested 8292 tokens (100 in the messages, 8192 in the completion). Please reduce the length of the messages or completion.",
      ),
    ),
    verdict: OPENS_AT_ONCE,
    through: BOTH,
  },
  {
    shape: 'vLLM’s flat 400 when this prompt leaves too little room for the completion (current wording)',
    source: `${VLLM_FLAT}; ${VLLM_CURRENT_WORDING}`,
    upstream: raw(
      400,
      vllmFlat(
        "'max_tokens' or 'max_completion_tokens' is too large: 512. This model's maximum context length is 4096 tokens and your request has 3700 input tokens (512 > 4096 - 3700).",
      ),
    ),
    verdict: REJECTED,
    through: BOTH,
  },
  {
    shape: 'vLLM’s flat 400 when this prompt with its completion exceeds the context length (older wording)',
    source: `${VLLM_FLAT}; ${VLLM_OLDER_WORDING}`,
    upstream: raw(
      400,
      vllmFlat(
        "This model's maximum context length is 4096 tokens. However, you requested 5021 tokens (4509 in the messages, 512 in the completion). Please reduce the length of the messages or completion.",
      ),
    ),
    verdict: REJECTED,
    through: BOTH,
  },
  {
    shape: 'vLLM’s nested 400 when this prompt alone exceeds the context length',
    source: `${VLLM_NESTED}; serving_engine.py _validate_input: "… However, your request has N input tokens"`,
    upstream: raw(
      400,
      vllmNested(
        "This model's maximum context length is 4096 tokens. However, your request has 5000 input tokens. Please reduce the length of the input messages.",
      ),
    ),
    verdict: REJECTED,
    through: BOTH,
  },

  // The HF Inference Providers router
  {
    shape: 'the router’s 400 model_not_supported',
    source: ROUTER,
    upstream: raw(400, {
      error: {
        message: "The requested model 'x' is not supported by any provider you have enabled.",
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_not_supported',
      },
    }),
    verdict: OPENS_AT_ONCE,
    through: BOTH,
  },
  {
    shape: 'the router’s 401 for bad credentials',
    source: ROUTER,
    upstream: raw(401, { error: 'Invalid credentials in Authorization header' }),
    verdict: OPENS_AT_ONCE,
    through: BOTH,
  },
  {
    shape: 'the router’s 402 once the monthly credits are spent',
    source: `${ROUTER}; wording as the router gives it`,
    upstream: raw(402, {
      error:
        'You have exceeded your monthly included credits for Inference Providers. Subscribe to PRO to get 20x more monthly included credits.',
    }),
    verdict: OPENS_AT_ONCE,
    through: BOTH,
  },
  {
    shape: 'the router’s 403 for a token without the Inference Providers permission',
    source: ROUTER,
    upstream: raw(403, {
      error: 'This authentication method does not have sufficient permissions to call Inference Providers on behalf of user fake-user',
    }),
    verdict: OPENS_AT_ONCE,
    through: BOTH,
  },
  {
    shape: 'a TGI-based provider’s token-limit wording in the nested shape, max_new_tokens alone over the total',
    source: `${OPENAI}, holding TGI's ValidationError wording, as TGI-based providers (Together) answer behind the router`,
    upstream: raw(400, {
      error: {
        message:
          'Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 25 `inputs` tokens and 8192 `max_new_tokens`',
        type: 'invalid_request_error',
      },
    }),
    verdict: OPENS_AT_ONCE,
    through: BOTH,
  },
  {
    shape: 'a TGI-based provider’s token-limit wording in the nested shape, for a long prompt',
    source: `${OPENAI}, holding TGI's ValidationError wording, as TGI-based providers (Together) answer behind the router`,
    upstream: raw(400, {
      error: {
        message:
          'Input validation error: `inputs` tokens + `max_new_tokens` must be <= 8193. Given: 9000 `inputs` tokens and 512 `max_new_tokens`',
        type: 'invalid_request_error',
      },
    }),
    verdict: REJECTED,
    through: BOTH,
  },

  // OpenAI-compatible servers
  {
    shape: 'an OpenAI-compatible 400 for max_tokens over the model’s completion limit',
    source: `${OPENAI}; OpenAI's max_tokens wording`,
    upstream: raw(400, {
      error: {
        message: 'max_tokens is too large: 8192. This model supports at most 4096 completion tokens, whereas you provided 8192.',
        type: 'invalid_request_error',
        param: 'max_tokens',
        code: null,
      },
    }),
    verdict: OPENS_AT_ONCE,
    through: BOTH,
  },
  {
    shape: 'an OpenAI-compatible 400 context_length_exceeded when the completion alone exceeds the context',
    source: `${OPENAI}; OpenAI's context_length_exceeded wording "(P in your prompt; C for the completion)"`,
    upstream: raw(400, {
      error: {
        message:
          "This model's maximum context length is 4097 tokens. However, you requested 8354 tokens (162 in your prompt; 8192 for the completion). Please reduce your prompt; or completion length.",
        type: 'invalid_request_error',
        param: 'messages',
        code: 'context_length_exceeded',
      },
    }),
    verdict: OPENS_AT_ONCE,
    through: BOTH,
  },
  {
    shape: 'an OpenAI-compatible 400 context_length_exceeded for a long prompt',
    source: `${OPENAI}; OpenAI's context_length_exceeded wording "(P in your prompt; C for the completion)"`,
    upstream: raw(400, {
      error: {
        message:
          "This model's maximum context length is 4097 tokens. However, you requested 4512 tokens (4000 in your prompt; 512 for the completion). Please reduce your prompt; or completion length.",
        type: 'invalid_request_error',
        param: 'messages',
        code: 'context_length_exceeded',
      },
    }),
    verdict: REJECTED,
    through: BOTH,
  },
  {
    shape: 'a 413 for a body over the endpoint’s limit',
    source: `${TGI_SPEC}, as the fake's payloadTooLarge sends it`,
    upstream: raw(413, tgiError('Payload Too Large: request body exceeds the 2000000 bytes limit', 'validation')),
    verdict: REJECTED,
    through: BOTH,
  },
  {
    shape: 'a 408 from an endpoint that gave up waiting for a generation slot',
    source: `${TGI_SPEC}, as the fake's requestTimeout sends it`,
    upstream: raw(408, tgiError('Request timed out while waiting for a generation slot', 'timeout')),
    verdict: COUNTS,
    through: BOTH,
  },
  {
    shape: 'a load balancer’s plain-text 502',
    source: 'a reverse proxy in front of the endpoint: text/plain, no JSON',
    upstream: { kind: 'raw', status: 502, body: 'Bad Gateway' },
    verdict: COUNTS,
    through: BOTH,
  },

  // Wait hints
  {
    shape: 'a 429 with Retry-After: 12',
    source: `RFC 9110 Retry-After (delay-seconds); ${TGI_SPEC} body`,
    upstream: raw(429, tgiError('Model is overloaded', 'overloaded'), { 'retry-after': '12' }),
    verdict: holdsOpenFor(12),
    through: BOTH,
  },
  {
    shape: 'a 429 whose Retry-After date has already passed (a skewed clock)',
    source: 'RFC 9110 Retry-After (HTTP-date); the shortest hold is one second',
    upstream: raw(429, { error: 'Rate limit reached' }, { 'retry-after': 'Wed, 21 Oct 2015 07:28:00 GMT' }),
    verdict: holdsOpenFor(1),
    through: BOTH,
  },
  {
    shape: 'a 429 whose ratelimit header says no requests remain for 55 s',
    source: HUB_RATELIMIT,
    upstream: raw(
      429,
      { error: 'Rate limit reached' },
      { ratelimit: '"api";r=0;t=55', 'ratelimit-policy': '"fixed window";"api";q=1000;w=300' },
    ),
    verdict: holdsOpenFor(55),
    through: BOTH,
  },
  {
    shape: 'a 503 whose ratelimit header still has 489 requests left',
    source: `${HUB_RATELIMIT}; sent on ordinary answers too`,
    upstream: raw(503, tgiError('Model is overloaded', 'overloaded'), {
      ratelimit: '"api";r=489;t=189',
      'ratelimit-policy': '"fixed window";"api";q=500;w=300',
    }),
    verdict: COUNTS,
    through: BOTH,
  },
  {
    shape: 'a 503 for a model still loading, with estimated_time 20.5',
    source: 'HF Inference API model-loading 503 {error, estimated_time} (read by @huggingface/inference and huggingface_hub)',
    upstream: raw(503, { error: 'Model x is currently loading', estimated_time: 20.5 }),
    verdict: holdsOpenFor(21),
    through: BOTH,
  },

  // Errors inside a 200 stream
  {
    shape: 'an error event in a 200 stream before the first token, as TGI’s chat route sends it',
    source: `${ROUTER}: an error can arrive inside an HTTP 200 stream; TGI's /v1/chat/completions OpenaiErrorEvent {error: {message, http_status_code}}`,
    upstream: {
      kind: 'errorMidStream',
      afterTokens: 0,
      errorShape: 'chat',
      error: 'Request failed during generation: Server error: CUDA out of memory',
    },
    verdict: COUNTS,
    through: STREAM_ONLY,
  },
  {
    shape: 'an ErrorResponse event in a 200 stream after two tokens, as TGI’s /generate_stream sends it',
    source: `${ROUTER}: TGI's /generate_stream sends {error, error_type} inside the stream (${TGI_SPEC})`,
    upstream: {
      kind: 'errorMidStream',
      afterTokens: 2,
      errorShape: 'errorResponse',
      error: 'Incomplete generation',
      errorType: 'incomplete_generation',
    },
    verdict: COUNTS,
    through: STREAM_ONLY,
  },
  {
    shape: 'a validation ErrorResponse event in a 200 stream after a token',
    source: 'huggingface_hub tests/test_inference_client.py test_chat_completion_error_in_stream (issue #2514)',
    upstream: {
      kind: 'errorMidStream',
      afterTokens: 1,
      errorShape: 'errorResponse',
      errorType: 'validation',
      error:
        'Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 6 `inputs` tokens and 4091 `max_new_tokens`',
    },
    verdict: COUNTS,
    through: STREAM_ONLY,
  },

  // No answer at all
  {
    shape: 'a connection the endpoint resets',
    source: 'the fake’s reset fault: the socket is reset before any answer (ECONNRESET)',
    upstream: { kind: 'reset' },
    verdict: COUNTS,
    through: BOTH,
  },
  {
    shape: 'a fetch that fails because this process is out of file descriptors (EMFILE)',
    source: UNDICI,
    fetchRejectsWith: () => new TypeError('fetch failed', { cause: socketError('EMFILE') }),
    verdict: LOCAL,
    through: BOTH,
  },
  {
    shape: 'a fetch that fails because the system is out of file descriptors (ENFILE), one cause deeper',
    source: `${UNDICI}, wrapped once more`,
    fetchRejectsWith: () => new TypeError('fetch failed', { cause: new Error('connect failed', { cause: socketError('ENFILE') }) }),
    verdict: LOCAL,
    through: BOTH,
  },
  {
    shape: 'a fetch that fails for want of socket buffers (ENOBUFS)',
    source: UNDICI,
    fetchRejectsWith: () => new TypeError('fetch failed', { cause: socketError('ENOBUFS') }),
    verdict: LOCAL,
    through: BOTH,
  },
  {
    shape: 'a fetch whose connection attempts failed for want of local ports (EADDRNOTAVAIL in an AggregateError)',
    source: `${UNDICI}; net's autoSelectFamily gathers each address family's attempt in an AggregateError`,
    fetchRejectsWith: () =>
      new TypeError('fetch failed', { cause: new AggregateError([socketError('EADDRNOTAVAIL'), socketError('EADDRNOTAVAIL')], '') }),
    verdict: LOCAL,
    through: BOTH,
  },
  {
    shape: 'a fetch refused on IPv4 whose IPv6 attempt had no address (a pod without IPv6): the endpoint is down',
    source: `${UNDICI}; Node's NodeAggregateError takes the first attempt's code, so either order must count`,
    fetchRejectsWith: () =>
      new TypeError('fetch failed', {
        cause: Object.assign(new AggregateError([socketError('EADDRNOTAVAIL'), socketError('ECONNREFUSED')], ''), {
          code: 'EADDRNOTAVAIL',
        }),
      }),
    verdict: COUNTS,
    through: BOTH,
  },
  {
    shape: 'a fetch refused on IPv4 first, then no IPv6 address',
    source: `${UNDICI}; the same outage, the attempts in the other order`,
    fetchRejectsWith: () =>
      new TypeError('fetch failed', {
        cause: Object.assign(new AggregateError([socketError('ECONNREFUSED'), socketError('EADDRNOTAVAIL')], ''), { code: 'ECONNREFUSED' }),
      }),
    verdict: COUNTS,
    through: BOTH,
  },
  {
    shape: 'a fetch that fails because V8 could not allocate a buffer',
    source: 'V8: RangeError "Array buffer allocation failed" when the heap is exhausted',
    fetchRejectsWith: () => new RangeError('Array buffer allocation failed'),
    verdict: LOCAL,
    through: BOTH,
  },
  {
    shape: 'a fetch whose connection is refused on every address',
    source: `${UNDICI}; the endpoint is down, not this replica`,
    fetchRejectsWith: () =>
      new TypeError('fetch failed', { cause: new AggregateError([socketError('ECONNREFUSED'), socketError('ECONNREFUSED')], '') }),
    verdict: COUNTS,
    through: BOTH,
  },
];
