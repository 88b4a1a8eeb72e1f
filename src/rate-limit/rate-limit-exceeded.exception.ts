import { HttpException, HttpStatus } from '@nestjs/common';

/** 429: the caller spent its budget for this window; `retryAfterSeconds` matches the Retry-After header. */
export class RateLimitExceededException extends HttpException {
  constructor(limit: number, retryAfterSeconds: number) {
    super(
      {
        statusCode: HttpStatus.TOO_MANY_REQUESTS,
        error: 'Too Many Requests',
        message: `Rate limit reached: ${limit} requests a minute; retry in ${retryAfterSeconds} s`,
        retryAfterSeconds,
      },
      HttpStatus.TOO_MANY_REQUESTS,
    );
  }
}
