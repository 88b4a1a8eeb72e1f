import { ArgumentsHost, Catch, ExceptionFilter, HttpStatus } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import type { UpstreamUnavailableDto } from './assistant-answer.dto.js';
import { UpstreamUnavailableError } from './assistant.errors.js';

/** The contract's 503: Retry-After header plus a body that says why and when to come back. */
@Catch(UpstreamUnavailableError)
export class UpstreamUnavailableFilter implements ExceptionFilter<UpstreamUnavailableError> {
  catch(error: UpstreamUnavailableError, host: ArgumentsHost): void {
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    const body: UpstreamUnavailableDto = {
      statusCode: HttpStatus.SERVICE_UNAVAILABLE,
      error: 'Service Unavailable',
      message: error.message,
      reason: error.reason,
      retryAfterSeconds: error.retryAfterSeconds,
      circuit: error.circuit,
    };
    void reply.status(HttpStatus.SERVICE_UNAVAILABLE).header('Retry-After', String(error.retryAfterSeconds)).send(body);
  }
}
