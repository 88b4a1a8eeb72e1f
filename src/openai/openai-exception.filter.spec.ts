import { describe, expect, it, jest } from '@jest/globals';
import {
  type ArgumentsHost,
  BadRequestException,
  HttpStatus,
  Logger,
  NotFoundException,
  ServiceUnavailableException,
} from '@nestjs/common';
import { UpstreamUnavailableError } from '../assistant/assistant.errors.js';
import { CLIENT_CLOSED_REQUEST } from '../assistant/client-gone.filter.js';
import { ClientGoneError } from '../assistant/client-signal.decorator.js';
import { RateLimitExceededException } from '../rate-limit/rate-limit-exceeded.exception.js';
import { OpenAiExceptionFilter, OpenAiPathExceptionFilter } from './openai-exception.filter.js';
import { InvalidChatRequestError } from './openai.errors.js';

/** What a reply was given: status, headers, body. */
interface Sent {
  status?: number;
  headers: Record<string, string>;
  body?: unknown;
}

function hostFor(url = '/v1/chat/completions'): { host: ArgumentsHost; sent: Sent } {
  const sent: Sent = { headers: {} };
  const reply = {
    status(code: number) {
      sent.status = code;
      return reply;
    },
    header(name: string, value: string) {
      sent.headers[name] = value;
      return reply;
    },
    send(body: unknown) {
      sent.body = body;
      return reply;
    },
  };
  const http = { getResponse: () => reply, getRequest: () => ({ url }) };
  return { host: { switchToHttp: () => http } as unknown as ArgumentsHost, sent };
}

function caught(exception: unknown): Sent {
  const { host, sent } = hostFor();
  new OpenAiExceptionFilter().catch(exception, host);
  return sent;
}

describe('OpenAiExceptionFilter', () => {
  it('sends a refused request as 400 invalid_request_error naming the field', () => {
    expect(caught(new InvalidChatRequestError('Bad temperature', 'temperature', 'invalid_type'))).toEqual({
      status: 400,
      headers: {},
      body: { error: { message: 'Bad temperature', type: 'invalid_request_error', param: 'temperature', code: 'invalid_type' } },
    });
  });

  it('sends the 503 as service_unavailable with Retry-After and the reason in the message', () => {
    const sent = caught(new UpstreamUnavailableError('circuit_open', 7, { name: 'huggingface', state: 'open' }));
    expect(sent).toMatchObject({ status: 503, headers: { 'Retry-After': '7' } });
    expect(sent.body).toMatchObject({
      error: { type: 'server_error', param: null, code: 'service_unavailable', message: expect.stringContaining('circuit_open') },
    });
  });

  it('keeps the 429 of the rate limit as rate_limit_exceeded', () => {
    expect(caught(new RateLimitExceededException(1, 42)).body).toEqual({
      error: {
        message: 'Rate limit reached: 1 requests a minute; retry in 42 s',
        type: 'requests',
        param: null,
        code: 'rate_limit_exceeded',
      },
    });
  });

  it('sends other HTTP errors with their status, their message, and the type their class of status has', () => {
    expect(caught(new BadRequestException(['a is wrong', 'b is wrong']))).toMatchObject({
      status: 400,
      body: { error: { message: 'a is wrong; b is wrong', type: 'invalid_request_error', code: null } },
    });
    expect(caught(new ServiceUnavailableException())).toMatchObject({
      status: 503,
      body: { error: { type: 'server_error', message: 'Service Unavailable' } },
    });
  });

  it('answers a client that left with 499 (which nobody reads) and an unexpected error with 500, logged, not told', () => {
    const logged = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    const bug = new Error('secret detail');
    expect(caught(new ClientGoneError()).status).toBe(CLIENT_CLOSED_REQUEST);
    expect(logged).not.toHaveBeenCalled();
    expect(caught(bug)).toEqual({
      status: HttpStatus.INTERNAL_SERVER_ERROR,
      headers: {},
      body: { error: { message: 'Internal server error', type: 'server_error', param: null, code: null } },
    });
    expect(logged).toHaveBeenCalledWith(bug);
    logged.mockRestore();
  });
});

describe('OpenAiPathExceptionFilter', () => {
  it('shapes errors under /v1 the OpenAI way, query strings included', () => {
    for (const url of ['/v1', '/v1/nothing', '/v1/models?x=1']) {
      const { host, sent } = hostFor(url);
      new OpenAiPathExceptionFilter().catch(new NotFoundException(`Cannot GET ${url}`), host);
      expect(sent).toMatchObject({ status: 404, body: { error: { message: `Cannot GET ${url}`, type: 'invalid_request_error' } } });
    }
  });
});
