import { InferenceClientProviderApiError, InferenceClientProviderOutputError } from '@huggingface/inference';
import { ModelCallFailedError, ModelRequestRejectedError } from './hf-textgen.errors.js';
import { retryAfterFromUpstream } from './retry-after.js';

/** 400/413/422 blame the request; every other status affects all requests alike (auth, credits, load, outage). */
const REQUEST_SPECIFIC_STATUSES = new Set([400, 413, 422]);
/** Statuses that fail every request until someone acts: credentials, credits, permissions, an unknown model. */
const EVERY_REQUEST_STATUSES = new Set([401, 402, 403, 404]);
/**
 * 4xx bodies that blame the deployment, not the prompt: TGI's "Template error" (the model has no chat template)
 * and a `max_new_tokens` / `max_tokens` over the model's own limit (HF_MAX_NEW_TOKENS), as opposed to the
 * prompt's tokens plus max_new_tokens being too many, which is this request's fault.
 */
const WHOLE_SERVICE_MESSAGES = [/template error/i, /^(?!.*\binputs\b).*\bmax_(new_)?tokens`?\s+must be\s+(<=|less than|at most)/i];

/**
 * Turns whatever the HF client threw into one of our errors. `headers` are the upstream response's,
 * kept by our fetch wrapper because the client's errors drop them. Errors that fetch itself creates are
 * recognised by name: they may come from another realm, where `instanceof` fails.
 */
export function classifyUpstreamError(
  error: unknown,
  { headers, signal }: { headers?: Headers; signal?: AbortSignal } = {},
): ModelCallFailedError | ModelRequestRejectedError {
  if (error instanceof ModelCallFailedError || error instanceof ModelRequestRejectedError) return error;
  if (error instanceof InferenceClientProviderApiError) return classifyHttpError(error, headers);
  if (signal?.aborted || hasName(error, 'AbortError', 'TimeoutError')) {
    return new ModelCallFailedError('timeout', 'The model call was aborted before it answered');
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
  const wholeService = isModelNotSupported(body) || WHOLE_SERVICE_MESSAGES.some((pattern) => pattern.test(detail));
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

function upstreamMessage(body: unknown): string | undefined {
  if (typeof body === 'string') return body.trim() || undefined;
  const error = (body as { error?: unknown } | null)?.error;
  if (typeof error === 'string') return error;
  const nested = errorObject(body)?.message;
  return typeof nested === 'string' ? nested : undefined;
}

function errorObject(body: unknown): Record<string, unknown> | undefined {
  const error = (body as { error?: unknown } | null)?.error;
  return error && typeof error === 'object' ? (error as Record<string, unknown>) : undefined;
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
