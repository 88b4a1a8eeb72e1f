import { createParamDecorator, type ExecutionContext, Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import type { FastifyRequest } from 'fastify';
import type { IdentifiedRequest } from '../access/api-key.guard.js';
import { rateLimitConfig } from '../config/rate-limit.config.js';
import { clientAddress } from './client-address.js';

/** Gives a caller's place back; calling it twice gives back one place. */
export type ReleaseCallerSlot = () => void;

const NOTHING_TO_RELEASE: ReleaseCallerSlot = () => undefined;

/**
 * RATE_LIMIT_CONCURRENT: model calls in flight per caller on this replica (a caller is its API key's id, or its address
 * without keys, as for RATE_LIMIT_PER_MINUTE). Beyond it that caller's request takes the fallbacks as `overloaded`;
 * other callers keep their places. Counted per replica: a place is held for milliseconds to seconds, and a Redis
 * round trip on both ends of every model call would cost more than the bulkhead it protects.
 */
@Injectable()
export class CallerConcurrency {
  private readonly inFlight = new Map<string, number>();
  private readonly limit: number;

  constructor(@Inject(rateLimitConfig.KEY) config: ConfigType<typeof rateLimitConfig>) {
    this.limit = config.concurrent;
  }

  /** A place for `caller`'s model calls, or undefined when it has `RATE_LIMIT_CONCURRENT` in flight already. */
  tryAcquire(caller: string | undefined): ReleaseCallerSlot | undefined {
    if (this.limit === 0 || caller === undefined) return NOTHING_TO_RELEASE;
    const held = this.inFlight.get(caller) ?? 0;
    if (held >= this.limit) return undefined;
    this.inFlight.set(caller, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.inFlight.get(caller) ?? 1) - 1;
      if (left === 0) this.inFlight.delete(caller);
      else this.inFlight.set(caller, left);
    };
  }

  /** Callers with a model call in flight now (a map of at most the replica's in-flight calls). */
  get callers(): number {
    return this.inFlight.size;
  }
}

/** Who is asking: `key:<key id>` with API keys, else `address:<client address>` by the rate limiter's rule (TRUST_PROXY, IPv6 per /64). */
export const Caller = createParamDecorator((_data: unknown, context: ExecutionContext): string => {
  const request = context.switchToHttp().getRequest<FastifyRequest>();
  const keyId = (request.raw as IdentifiedRequest).apiKeyId;
  return keyId === undefined ? `address:${clientAddress(request)}` : `key:${keyId}`;
});
