import { type CanActivate, type ExecutionContext, HttpException, HttpStatus, Injectable, UnauthorizedException } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { clientAddress } from '../rate-limit/client-address.js';
import { ApiKeyRefusedError, KeyChecksExhaustedError } from './access.errors.js';
import { ApiKeyChecks } from './api-key-checks.js';
import { PUBLIC_ROUTE_METADATA } from './public-route.decorator.js';

/** The raw request carries the caller's key id from here on, for the request's log line. */
export interface IdentifiedRequest {
  apiKeyId?: string;
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** The key a request presents: `Authorization: Bearer <key>` or `x-api-key: <key>`. */
function presentedKey(request: FastifyRequest): string | undefined {
  const bearer = BEARER.exec(request.headers.authorization ?? '')?.[1];
  const header = request.headers['x-api-key'];
  return bearer ?? (typeof header === 'string' && header !== '' ? header : undefined);
}

/**
 * With ASSISTANT_API_KEYS set, every route but the public ones needs one of the keys: 401 otherwise, and 429 for a
 * client address past its budget of failed checks (KeyCheckBudget), the same body as the rate limiter's.
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly checks: ApiKeyChecks,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (!this.checks.required) return true;
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE_METADATA, [context.getHandler(), context.getClass()])) return true;
    const http = context.switchToHttp();
    const request = http.getRequest<FastifyRequest>();
    try {
      (request.raw as IdentifiedRequest).apiKeyId = await this.checks.identify(clientAddress(request), presentedKey(request));
      return true;
    } catch (error) {
      throw refusal(error, http.getResponse<FastifyReply>());
    }
  }
}

function refusal(error: unknown, reply: FastifyReply): unknown {
  if (error instanceof ApiKeyRefusedError) {
    void reply.header('WWW-Authenticate', 'Bearer realm="assistant"');
    return new UnauthorizedException(error.message);
  }
  if (error instanceof KeyChecksExhaustedError) {
    void reply.header('Retry-After', String(error.retryAfterSeconds));
    return new HttpException(
      {
        statusCode: HttpStatus.TOO_MANY_REQUESTS,
        error: 'Too Many Requests',
        message: error.message,
        retryAfterSeconds: error.retryAfterSeconds,
      },
      HttpStatus.TOO_MANY_REQUESTS,
    );
  }
  return error;
}
