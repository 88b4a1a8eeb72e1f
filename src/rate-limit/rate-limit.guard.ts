import { type ExecutionContext, Injectable } from '@nestjs/common';
import { ThrottlerGuard, type ThrottlerRequest } from '@nestjs/throttler';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { IdentifiedRequest } from '../access/api-key.guard.js';
import { PUBLIC_ROUTE_METADATA } from '../access/public-route.decorator.js';
import { clientAddress } from './client-address.js';
import { RateLimitExceededException } from './rate-limit-exceeded.exception.js';

/** The window every limit is counted in; the contract's `w=60`. */
export const RATE_LIMIT_WINDOW_SECONDS = 60;
/** The policy's name in the RateLimit headers. */
const POLICY = 'default';

/**
 * RATE_LIMIT_PER_MINUTE answer requests a minute per caller, on every route but the public ones, once the API key
 * guard has let the request in. A caller is its key's id when keys are set (one budget per key, whichever replica
 * and answer route it reaches), else its address (TRUST_PROXY decides whether X-Forwarded-For gives it).
 * Every answer carries `RateLimit` and `RateLimit-Policy` (IETF draft httpapi-ratelimit-headers); over the limit, 429.
 * Cache hits count: a caller cannot know in advance which of its questions are cached, and a hit costs a replica too.
 */
@Injectable()
export class RateLimitGuard extends ThrottlerGuard {
  protected override shouldSkip(context: ExecutionContext): Promise<boolean> {
    return Promise.resolve(
      this.throttlers.every((throttler) => throttler.limit === 0) ||
        this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE_METADATA, [context.getHandler(), context.getClass()]) === true,
    );
  }

  protected override getTracker(request: Record<string, unknown>): Promise<string> {
    const fastifyRequest = request as unknown as FastifyRequest;
    const keyId = (fastifyRequest.raw as IdentifiedRequest).apiKeyId;
    return Promise.resolve(keyId === undefined ? `address:${clientAddress(fastifyRequest)}` : `key:${keyId}`);
  }

  /** One budget per caller across the answer routes (the library's default would keep one per route). */
  protected override generateKey(_context: ExecutionContext, tracker: string, throttlerName: string): string {
    return `${throttlerName}:${tracker}`;
  }

  protected override async handleRequest({
    context,
    limit,
    ttl,
    throttler,
    blockDuration,
    getTracker,
    generateKey,
  }: ThrottlerRequest): Promise<boolean> {
    const http = context.switchToHttp();
    const request = http.getRequest<FastifyRequest>();
    const name = throttler.name ?? POLICY;
    const key = generateKey(context, await getTracker(request, context), name);
    const { totalHits, timeToExpire, isBlocked, timeToBlockExpire } = await this.storageService.increment(
      key,
      ttl,
      limit,
      blockDuration,
      name,
    );
    const secondsLeft = isBlocked ? timeToBlockExpire : timeToExpire;
    void http
      .getResponse<FastifyReply>()
      .header('RateLimit', `"${POLICY}";r=${Math.max(0, limit - totalHits)};t=${secondsLeft}`)
      .header('RateLimit-Policy', `"${POLICY}";q=${limit};w=${RATE_LIMIT_WINDOW_SECONDS}`);
    if (isBlocked) {
      void http.getResponse<FastifyReply>().header('Retry-After', String(secondsLeft));
      throw new RateLimitExceededException(limit, secondsLeft);
    }
    return true;
  }
}
