import { type ArgumentsHost, Catch, type ExceptionFilter, HttpException, HttpStatus, Logger } from '@nestjs/common';
import { BaseExceptionFilter } from '@nestjs/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { UpstreamUnavailableError } from '../assistant/assistant.errors.js';
import { CLIENT_CLOSED_REQUEST } from '../assistant/client-gone.filter.js';
import { ClientGoneError } from '../assistant/client-signal.decorator.js';
import type { OpenAiErrorDto, OpenAiErrorResponseDto } from './openai.dto.js';
import { InvalidChatRequestError } from './openai.errors.js';

/** The routes that speak OpenAI's protocol, errors included. */
export const OPENAI_PATH_PREFIX = '/v1';

interface OpenAiError {
  status: number;
  error: OpenAiErrorDto;
  retryAfterSeconds?: number;
  /** Not a refusal but a bug: logged, as Nest's own handler logs it. */
  unexpected?: true;
}

/** Every error of a /v1 route (its guards, pipes and handler) as OpenAI's `{"error": {message, type, param, code}}`. */
@Catch()
export class OpenAiExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger(OpenAiExceptionFilter.name);

  catch(exception: unknown, host: ArgumentsHost): void {
    const error = toOpenAiError(exception);
    if (error.unexpected) this.logger.error(exception);
    send(host.switchToHttp().getResponse<FastifyReply>(), error);
  }
}

/**
 * What fails before a route runs (a body that is not JSON, too large, of another type; an unknown path) in the same
 * shape under /v1; everywhere else as Nest answers it.
 */
@Catch(HttpException)
export class OpenAiPathExceptionFilter extends BaseExceptionFilter {
  override catch(exception: HttpException, host: ArgumentsHost): void {
    const { url } = host.switchToHttp().getRequest<FastifyRequest>();
    if (!isOpenAiPath(url)) return super.catch(exception, host);
    send(host.switchToHttp().getResponse<FastifyReply>(), toOpenAiError(exception));
  }
}

function isOpenAiPath(url: string): boolean {
  const path = url.split('?', 1)[0];
  return path === OPENAI_PATH_PREFIX || path.startsWith(`${OPENAI_PATH_PREFIX}/`);
}

function send(reply: FastifyReply, { status, error, retryAfterSeconds }: OpenAiError): void {
  // Headers a guard set before refusing (WWW-Authenticate, Retry-After and RateLimit) stay on the reply.
  if (retryAfterSeconds !== undefined) void reply.header('Retry-After', String(retryAfterSeconds));
  const body: OpenAiErrorResponseDto = { error };
  void reply.status(status).send(body);
}

function toOpenAiError(exception: unknown): OpenAiError {
  if (exception instanceof InvalidChatRequestError) {
    return {
      status: HttpStatus.BAD_REQUEST,
      error: openAiError(exception.message, 'invalid_request_error', exception.param, exception.code),
    };
  }
  if (exception instanceof UpstreamUnavailableError) {
    return {
      status: HttpStatus.SERVICE_UNAVAILABLE,
      error: openAiError(`${exception.message} (${exception.reason})`, 'server_error', null, 'service_unavailable'),
      retryAfterSeconds: exception.retryAfterSeconds,
    };
  }
  if (exception instanceof ClientGoneError) {
    return { status: CLIENT_CLOSED_REQUEST, error: openAiError(exception.message, 'invalid_request_error', null, 'client_closed_request') };
  }
  if (exception instanceof HttpException) return describeHttpException(exception);
  return {
    status: HttpStatus.INTERNAL_SERVER_ERROR,
    error: openAiError('Internal server error', 'server_error', null, null),
    unexpected: true,
  };
}

/** OpenAI's type and code for the statuses the app's guards refuse with; any other status has no code. */
const GUARD_REFUSALS: Partial<Record<number, [type: string, code: string]>> = {
  [HttpStatus.UNAUTHORIZED]: ['invalid_request_error', 'invalid_api_key'],
  [HttpStatus.TOO_MANY_REQUESTS]: ['requests', 'rate_limit_exceeded'],
};

function describeHttpException(exception: HttpException): OpenAiError {
  const status = exception.getStatus();
  const [type, code] = GUARD_REFUSALS[status] ?? [status >= 500 ? 'server_error' : 'invalid_request_error', null];
  return { status, error: openAiError(messageOf(exception), type, null, code) };
}

/** The sentence(s) of an HttpException: its response's `message` (one or several), or the response itself. */
function messageOf(exception: HttpException): string {
  const response = exception.getResponse();
  if (typeof response === 'string') return response;
  const message = (response as { message?: unknown }).message;
  if (Array.isArray(message)) return message.join('; ');
  return typeof message === 'string' ? message : exception.message;
}

function openAiError(message: string, type: string, param: string | null, code: string | null): OpenAiErrorDto {
  return { message, type, param, code };
}
