import { InferenceClientProviderApiError, InferenceClientProviderOutputError } from '@huggingface/inference';
import { LocalResourceError, ModelCallFailedError, ModelRequestRejectedError, type LocalResourceCode } from './hf-textgen.errors.js';
import { retryAfterFromUpstream } from './retry-after.js';

/** 400/413/422 blame the request; every other status affects all requests alike (auth, credits, load, outage). */
const REQUEST_SPECIFIC_STATUSES = new Set([400, 413, 422]);
/** Statuses that fail every request until someone acts: credentials, credits, permissions, an unknown model. */
const EVERY_REQUEST_STATUSES = new Set([401, 402, 403, 404]);
/**
 * 4xx bodies that blame the deployment, not the prompt: TGI's "Template error" (the model has no chat template),
 * and a completion budget (HF_MAX_NEW_TOKENS) that the model could not grant even to an empty prompt.
 */
const TEMPLATE_ERROR = /template error/i;

/** What this replica ran out of, by the code Node puts on the error. */
const LOCAL_SHORTAGES: Readonly<Record<LocalResourceCode, string>> = {
  EMFILE: 'file descriptors',
  ENFILE: 'file descriptors (system-wide)',
  ENOBUFS: 'socket buffers',
  EADDRNOTAVAIL: 'local ports',
  ENOMEM: 'memory',
  ERR_MEMORY_ALLOCATION_FAILED: 'memory',
};
/** Enough to reach fetch's cause, its cause, and the attempts of an AggregateError among them; a cycle stops here too. */
const MAX_CAUSE_DEPTH = 3;

/** The token limit and the completion tokens asked for, from the wordings of TGI, vLLM and OpenAI-style servers. */
function tokenBudget(message: string): { limit: number; completion: number } | undefined {
  // TGI: "`inputs` tokens + `max_new_tokens` must be <= 4096. Given: 12 `inputs` tokens and 8192 `max_new_tokens`"
  const tgi = /must be <= (\d+)\. Given: \d+ `inputs` tokens and (\d+) `max_new_tokens`/.exec(message);
  if (tgi) return { limit: Number(tgi[1]), completion: Number(tgi[2]) };
  // TGI (declared): "`max_new_tokens` must be <= 2048. Given: 4096"
  const tgiMaxNew = /`?max_new_tokens`? must be <= (\d+)\. Given: (\d+)/.exec(message);
  if (tgiMaxNew) return { limit: Number(tgiMaxNew[1]), completion: Number(tgiMaxNew[2]) };
  // vLLM: "'max_tokens' or 'max_completion_tokens' is too large: 8192. This model's maximum context length is 4096 tokens and your request has 25 input tokens"
  const vllm = /is too large: (\d+)\. This model.s maximum context length is (\d+) tokens/.exec(message);
  if (vllm) return { limit: Number(vllm[2]), completion: Number(vllm[1]) };
  // older vLLM: "maximum context length is 4096 tokens. However, you requested 8292 tokens (100 in the messages, 8192 in the completion)";
  // OpenAI's context_length_exceeded: "... (162 in your prompt; 8192 for the completion)"
  const requested = /maximum context length is (\d+) tokens.*?(\d+) (?:in|for) the completion/s.exec(message);
  if (requested) return { limit: Number(requested[1]), completion: Number(requested[2]) };
  // OpenAI-style: "max_tokens is too large: 8192. This model supports at most 4096 completion tokens"
  const openai = /max_tokens is too large: (\d+)\. This model supports at most (\d+)/.exec(message);
  if (openai) return { limit: Number(openai[2]), completion: Number(openai[1]) };
  return undefined;
}

/** Every request fails alike: the model has no chat template, or the completion budget alone exceeds its limit. */
function blamesTheDeployment(message: string): boolean {
  if (TEMPLATE_ERROR.test(message)) return true;
  const budget = tokenBudget(message);
  return budget !== undefined && budget.completion >= budget.limit;
}

/**
 * Turns whatever the HF client threw into one of our errors. `headers` are the upstream response's,
 * kept by our fetch wrapper because the client's errors drop them. Errors that fetch itself creates are
 * recognised by name: they may come from another realm, where `instanceof` fails.
 */
export function classifyUpstreamError(
  error: unknown,
  { headers, signal }: { headers?: Headers; signal?: AbortSignal } = {},
): ModelCallFailedError | ModelRequestRejectedError | LocalResourceError {
  if (error instanceof ModelCallFailedError || error instanceof ModelRequestRejectedError || error instanceof LocalResourceError)
    return error;
  if (error instanceof InferenceClientProviderApiError) return classifyHttpError(error, headers);
  if (signal?.aborted || hasName(error, 'AbortError', 'TimeoutError')) {
    return new ModelCallFailedError('timeout', 'The model call was aborted before it answered');
  }
  const shortage = localResourceCode(error);
  if (shortage) {
    return new LocalResourceError(shortage, `The model was not called: this replica ran out of ${LOCAL_SHORTAGES[shortage]} (${shortage})`);
  }
  if (error instanceof InferenceClientProviderOutputError || hasName(error, 'SyntaxError')) {
    return new ModelCallFailedError('protocol', `The model sent a response that is not a chat completion: ${messageOf(error)}`);
  }
  // fetch failed: refused, reset, DNS, TLS, a body cut short.
  return new ModelCallFailedError('network', `The model endpoint could not be reached: ${describeCause(error)}`);
}

function classifyHttpError(error: InferenceClientProviderApiError, headers?: Headers): ModelCallFailedError | ModelRequestRejectedError {
  const { status, body } = error.httpResponse;
  const detail = upstreamMessage(body) ?? `HTTP ${status}`;
  const wholeService = isModelNotSupported(body) || blamesTheDeployment(detail);
  if (REQUEST_SPECIFIC_STATUSES.has(status) && !wholeService) {
    return new ModelRequestRejectedError(status, `The model rejected this request (${status}): ${detail}`);
  }
  return new ModelCallFailedError(
    'http',
    `The model endpoint answered ${status}: ${detail}`,
    status,
    retryAfterFromUpstream(headers, body),
    wholeService || EVERY_REQUEST_STATUSES.has(status),
  );
}

/** The router's "unknown model" is a 400 but a configuration failure: every request gets it. */
function isModelNotSupported(body: unknown): boolean {
  return errorObject(body)?.code === 'model_not_supported';
}

/** The error text at `error` (TGI, the router), `error.message` (OpenAI, vLLM) or a top-level `message` (older vLLM). */
function upstreamMessage(body: unknown): string | undefined {
  if (typeof body === 'string') return body.trim() || undefined;
  const { error, message } = (body ?? {}) as { error?: unknown; message?: unknown };
  if (typeof error === 'string') return error;
  const nested = errorObject(body)?.message;
  if (typeof nested === 'string') return nested;
  return typeof message === 'string' ? message : undefined;
}

function errorObject(body: unknown): Record<string, unknown> | undefined {
  const error = (body as { error?: unknown } | null)?.error;
  return error && typeof error === 'object' ? (error as Record<string, unknown>) : undefined;
}

/**
 * This replica's own shortage among the error's causes: undici puts the socket's errno code on fetch's cause (or the
 * cause's cause). Node gathers the attempts at each address of a host (autoSelectFamily) in an AggregateError whose
 * own code is the first attempt's: the replica is to blame only if every attempt ran short here. One refused or
 * timed out means the network was reached and the endpoint failed (an IPv6 attempt fails with EADDRNOTAVAIL on
 * every pod without IPv6, whatever the model does). A RangeError "Array buffer allocation failed" is V8 out of memory.
 */
function localResourceCode(error: unknown, depth = 0): LocalResourceCode | undefined {
  if (depth > MAX_CAUSE_DEPTH || typeof error !== 'object' || error === null) return undefined;
  const { code, cause, errors } = error as { code?: unknown; cause?: unknown; errors?: unknown };
  if (Array.isArray(errors) && errors.length > 0) {
    // Each attempt at the aggregate's own depth: they are its parts, not causes further down.
    const attempts = (errors as unknown[]).map((attempt) => localResourceCode(attempt, depth));
    return attempts.every((found) => found !== undefined) ? attempts[0] : undefined;
  }
  if (typeof code === 'string' && Object.hasOwn(LOCAL_SHORTAGES, code)) return code as LocalResourceCode;
  if (hasName(error, 'RangeError') && /allocation failed/i.test(messageOf(error))) return 'ERR_MEMORY_ALLOCATION_FAILED';
  return localResourceCode(cause, depth + 1);
}

function hasName(error: unknown, ...names: string[]): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return typeof name === 'string' && names.includes(name);
}

function messageOf(error: unknown): string {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(error);
}

function describeCause(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  return typeof cause?.message === 'string' ? cause.message : messageOf(error);
}
