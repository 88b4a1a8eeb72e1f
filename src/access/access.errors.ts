/** Why a request's API key was refused: it sent none, or a key that is not one of ASSISTANT_API_KEYS. */
export type KeyRefusalReason = 'missing' | 'invalid';

/** The request presented no configured key (→ 401). */
export class ApiKeyRefusedError extends Error {
  constructor(readonly reason: KeyRefusalReason) {
    super(
      reason === 'missing' ? 'An API key is required: send Authorization: Bearer <key> or x-api-key: <key>' : 'The API key is not valid',
    );
    this.name = 'ApiKeyRefusedError';
  }
}

/** The client address spent its budget of failed key checks: no key is looked at until `retryAfterSeconds` (→ 429). */
export class KeyChecksExhaustedError extends Error {
  constructor(
    readonly budget: number,
    readonly retryAfterSeconds: number,
  ) {
    super(`Too many failed API key checks from this address: ${budget} failed API key checks a minute; retry in ${retryAfterSeconds} s`);
    this.name = 'KeyChecksExhaustedError';
  }
}
