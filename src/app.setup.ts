import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { BadRequestException, ValidationPipe } from '@nestjs/common';
import type { NestApplicationOptions } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Logger } from 'nestjs-pino';
import type { ConfigType } from '@nestjs/config';
import { capConnections, KEEP_ALIVE_TIMEOUT_MS, MAX_REQUESTS_PER_SOCKET } from './connection-limits.js';
import { appConfig } from './config/app.config.js';
import { trustProxySetting } from './config/rate-limit.config.js';
import type { TrustProxy } from './config/environment.js';
import { ApplicationReadiness } from './health/application-readiness.js';
import { REQUEST_ID_HEADER, requestIdFrom, returnRequestIds } from './logging/request-id.js';
import { setUpApiDocumentation } from './openapi/openapi.setup.js';
import { answerClientError, sendSecurityHeaders } from './security-headers.js';

/** Larger than any valid body (a 10 000-character query fully \u-escaped is ~60 KB); past it, 413. */
export const BODY_LIMIT_BYTES = 64 * 1024;

/**
 * Nest's own parsers would accept form bodies; Fastify's JSON parser alone makes every other type a 415.
 * Logs made before `useLogger` are held back and then written through pino, not Nest's console format.
 */
export const APP_OPTIONS: NestApplicationOptions = { bodyParser: false, abortOnError: false, bufferLogs: true };

/** The whole request (headers and body) must arrive within this: a client that trickles its body cannot hold a socket. */
export const REQUEST_TIMEOUT_MS = 10_000;
/** The headers alone must arrive within this. */
export const HEADERS_TIMEOUT_MS = 5_000;
/** How often Node checks the two above (its default, 30 s, would let a slow client hold on up to 30 s longer). */
const TIMEOUT_CHECK_INTERVAL_MS = 1_000;

export function createHttpAdapter(trustProxy: TrustProxy = trustProxySetting()): FastifyAdapter {
  const adapter = new FastifyAdapter({
    bodyLimit: BODY_LIMIT_BYTES,
    // Which proxies may say who the client is (X-Forwarded-For): the address rate limits count by when there are no keys.
    trustProxy,
    genReqId: (request: IncomingMessage) => requestIdFrom(request.headers[REQUEST_ID_HEADER]),
    requestTimeout: REQUEST_TIMEOUT_MS,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    maxRequestsPerSocket: MAX_REQUESTS_PER_SOCKET,
    http: { headersTimeout: HEADERS_TIMEOUT_MS, connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS },
    // A request Node cannot parse, too slow or with headers too large: answered with the security headers too.
    clientErrorHandler: answerClientError,
  });
  const fastify = adapter.getInstance();
  capConnections(fastify);
  fastify.removeContentTypeParser('text/plain');
  limitJsonNesting(fastify);
  sendSecurityHeaders(fastify.server);
  return adapter;
}

/**
 * No valid body nests deeper than a few levels; a deeply nested one (a few KB of `[`) would overflow the stack of
 * the validation that walks it (class-transformer recurses) and turn into a 500. Refused at parsing, with a 400.
 */
export const MAX_JSON_NESTING = 32;

/** Fastify's own JSON parser (prototype-poisoning checks included), after a scan for nesting deeper than MAX_JSON_NESTING. */
function limitJsonNesting(fastify: FastifyInstance): void {
  const parseJson = fastify.getDefaultJsonParser('error', 'error');
  fastify.removeContentTypeParser('application/json');
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (request, raw, done) => {
    const body = raw as string;
    if (jsonNestingExceeds(body, MAX_JSON_NESTING)) {
      return done(new BadRequestException(`JSON nested deeper than ${MAX_JSON_NESTING} levels`), undefined);
    }
    void parseJson(request, body, done);
  });
}

/** Whether `json` opens more than `limit` arrays/objects inside each other (brackets inside strings do not count). */
export function jsonNestingExceeds(json: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const char = json.charCodeAt(i);
    if (inString) {
      if (char === 0x5c)
        i++; // a backslash escapes the next character
      else if (char === 0x22) inString = false;
    } else if (char === 0x22) inString = true;
    else if (char === 0x5b || char === 0x7b) {
      if (++depth > limit) return true;
    } else if (char === 0x5d || char === 0x7d) depth--;
  }
  return false;
}

/** What main.ts and the e2e suites both apply, so tests exercise the app users run. */
export function configureApp(app: NestFastifyApplication): NestFastifyApplication {
  app.useLogger(app.get(Logger));
  app.useGlobalPipes(new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true, transform: true, stopAtFirstError: true }));
  returnRequestIds(app);
  closeConnectionsWhileDraining(app);
  setUpApiDocumentation(app, app.get<ConfigType<typeof appConfig>>(appConfig.KEY).docsEnabled);
  return app;
}

/** A keep-alive connection would outlive the drain (idle ones are kept 65 s): once draining, each response closes its own. */
function closeConnectionsWhileDraining(app: NestFastifyApplication): void {
  const readiness = app.get(ApplicationReadiness);
  app
    .getHttpAdapter()
    .getInstance()
    .addHook('onSend', async (_request, reply) => {
      if (readiness.draining) void reply.header('connection', 'close');
    });
}
