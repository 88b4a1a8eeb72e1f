/** Neither HF_TOKEN nor HF_ENDPOINT_URL is set: no call is made. Not the upstream's fault; does not trip the breaker. */
export class ModelUnconfiguredError extends Error {
  constructor() {
    super('No model is configured: set HF_TOKEN (HF Inference Providers) or HF_ENDPOINT_URL (a TGI / OpenAI-compatible endpoint)');
    this.name = 'ModelUnconfiguredError';
  }
}

export type ModelFailureKind = 'timeout' | 'network' | 'http' | 'protocol';

/** The model could not answer for a reason that would hit any request alike; trips the breaker. */
export class ModelCallFailedError extends Error {
  constructor(
    readonly kind: ModelFailureKind,
    message: string,
    /** HTTP status from the upstream, when it answered at all. */
    readonly status?: number,
    /** The upstream's own wait hint (Retry-After, the Hub's `ratelimit` header, `estimated_time`). */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'ModelCallFailedError';
  }
}

/** The upstream rejected this particular request (400, 413, 422): the prompt is at fault, not the model. */
export class ModelRequestRejectedError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ModelRequestRejectedError';
  }
}

/** What counts against the breaker: anything but a request-specific rejection or a missing configuration. */
export function isModelOutage(error: unknown): boolean {
  return !(error instanceof ModelRequestRejectedError || error instanceof ModelUnconfiguredError);
}
