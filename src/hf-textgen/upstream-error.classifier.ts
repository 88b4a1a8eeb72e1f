import { InferenceClientProviderApiError, InferenceClientProviderOutputError } from '@huggingface/inference';
import { ModelCallFailedError, ModelRequestRejectedError } from './hf-textgen.errors.js';
import { retryAfterFromUpstream } from './retry-after.js';

/** 400/413/422 blame the request; every other status affects all requests alike (auth, credits, load, outage). */
const REQUEST_SPECIFIC_STATUSES = new Set([400, 413, 422]);

/**
 * Turns whatever the HF client threw into one of our errors. `headers` are the upstream response's,
 * kept by our fetch wrapper because the client's errors drop them.
 */
export function classifyUpstreamError(error: unknown, headers?: Headers): ModelCallFailedError | ModelRequestRejectedError {
  if (error instanceof ModelCallFailedError || error instanceof ModelRequestRejectedError) return error;
  if (error instanceof InferenceClientProviderApiError) return classifyHttpError(error, headers);
  if (isAbort(error)) return new ModelCallFailedError('timeout', 'The model call was aborted before it answered');
  if (error instanceof InferenceClientProviderOutputError || error instanceof SyntaxError) {
    return new ModelCallFailedError('protocol', `The model sent a response that is not a chat completion: ${error.message}`);
  }
  // fetch failed: refused, reset, DNS, TLS, a body cut short.
  return new ModelCallFailedError('network', `The model endpoint could not be reached: ${describeCause(error)}`);
}

function classifyHttpError(error: InferenceClientProviderApiError, headers?: Headers): ModelCallFailedError | ModelRequestRejectedError {
  const { status, body } = error.httpResponse;
  const detail = upstreamMessage(body) ?? `HTTP ${status}`;
  if (REQUEST_SPECIFIC_STATUSES.has(status) && !isModelNotSupported(body)) {
    return new ModelRequestRejectedError(status, `The model rejected this request (${status}): ${detail}`);
  }
  return new ModelCallFailedError('http', `The model endpoint answered ${status}: ${detail}`, status, retryAfterFromUpstream(headers, body));
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

function isAbort(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError');
}

function describeCause(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause as { code?: string; message?: string } | undefined;
  return cause?.code ?? cause?.message ?? error.message;
}
