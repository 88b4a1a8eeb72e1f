import { type ArgumentsHost, Catch } from '@nestjs/common';
import { BaseExceptionFilter } from '@nestjs/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { CLIENT_CLOSED_REQUEST } from '../assistant/client-gone.filter.js';

/**
 * A client that went away before its whole body arrived: Node's `aborted` error (ECONNRESET) reaches the exception
 * layer from the body parser, and Nest's own handler would log it as an error with a stack. Nothing went wrong on the
 * server and nobody is left to answer: 499, sent to nobody, logged once by the request's own line (at info). Any other
 * error is answered as Nest answers it. Registered before the other modules' filters, so each of theirs is asked first.
 */
@Catch()
export class AbortedRequestFilter extends BaseExceptionFilter {
  override catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    if (!isAbortedBody(exception, http.getRequest<FastifyRequest>())) return super.catch(exception, host);
    void http.getResponse<FastifyReply>().status(CLIENT_CLOSED_REQUEST).send();
  }
}

/** By its code, not `instanceof Error`: Node's own errors come from another realm under Jest's module sandbox. */
function isAbortedBody(exception: unknown, request: FastifyRequest): boolean {
  return request.raw.readableAborted && (exception as NodeJS.ErrnoException | undefined)?.code === 'ECONNRESET';
}
