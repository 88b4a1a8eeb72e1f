import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { FastifyReply } from 'fastify';

/** The caller closed its connection before the answer was sent. */
export class ClientGoneError extends Error {
  constructor() {
    super('The client closed the connection before the answer was sent');
    this.name = 'AbortError';
  }
}

/**
 * An AbortSignal that aborts when the client goes away before its response is written, so the work done for it
 * (the model call, its socket) stops too. A response that finishes normally never aborts it.
 */
export const ClientSignal = createParamDecorator((_data: unknown, context: ExecutionContext): AbortSignal => {
  const response = context.switchToHttp().getResponse<FastifyReply>().raw;
  const controller = new AbortController();
  response.once('close', () => {
    if (!response.writableFinished) controller.abort(new ClientGoneError());
  });
  return controller.signal;
});
