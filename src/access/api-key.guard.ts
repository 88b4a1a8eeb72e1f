import { type CanActivate, type ExecutionContext, Inject, Injectable, UnauthorizedException } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { Reflector } from '@nestjs/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { accessConfig } from '../config/access.config.js';
import { ApiKeys } from './api-keys.js';
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

/** With ASSISTANT_API_KEYS set, every route but the public ones needs one of the keys; 401 otherwise. */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  private readonly keys: ApiKeys;

  constructor(
    private readonly reflector: Reflector,
    @Inject(accessConfig.KEY) config: ConfigType<typeof accessConfig>,
  ) {
    this.keys = new ApiKeys(config.apiKeys);
  }

  canActivate(context: ExecutionContext): boolean {
    if (!this.keys.required) return true;
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE_METADATA, [context.getHandler(), context.getClass()])) return true;
    const http = context.switchToHttp();
    const request = http.getRequest<FastifyRequest>();
    const presented = presentedKey(request);
    const id = presented === undefined ? undefined : this.keys.identify(presented);
    if (id !== undefined) {
      (request.raw as IdentifiedRequest).apiKeyId = id;
      return true;
    }
    void http.getResponse<FastifyReply>().header('WWW-Authenticate', 'Bearer realm="assistant"');
    throw new UnauthorizedException(
      presented === undefined ? 'An API key is required: send Authorization: Bearer <key> or x-api-key: <key>' : 'The API key is not valid',
    );
  }
}
