import { ArgumentsHost, Catch, ExceptionFilter } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { ClientGoneError } from './client-signal.decorator.js';

/** nginx's "client closed request": logged as a 4xx, not the server's error, and sent to nobody. */
export const CLIENT_CLOSED_REQUEST = 499;

/** A request whose client went away ends here: no fallback was built, and nothing is counted as served. */
@Catch(ClientGoneError)
export class ClientGoneFilter implements ExceptionFilter<ClientGoneError> {
  catch(error: ClientGoneError, host: ArgumentsHost): void {
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    void reply
      .status(CLIENT_CLOSED_REQUEST)
      .send({ statusCode: CLIENT_CLOSED_REQUEST, error: 'Client Closed Request', message: error.message });
  }
}
