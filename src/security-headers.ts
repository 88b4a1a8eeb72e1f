import { type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import helmet, { type HelmetOptions } from 'helmet';

/**
 * Helmet's defaults without upgrade-insecure-requests: TLS ends at the ingress, and /docs is also read over plain
 * http inside the cluster and on a developer's machine. Its default CSP (scripts from 'self') suits Swagger UI, whose
 * page loads its script from /docs/swagger-ui-init.js rather than inline.
 */
const HELMET_OPTIONS: HelmetOptions = { contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } } };

type Header = readonly [name: string, value: string];

/** The headers helmet sets with those options, worked out once: with no per-request directive, every response gets the same. */
export const SECURITY_HEADERS: readonly Header[] = headersHelmetSets(HELMET_OPTIONS);

function headersHelmetSets(options: HelmetOptions): Header[] {
  const headers = new Map<string, string>();
  // Helmet only sets and removes headers, and reads nothing of the request for these options.
  const response = {
    setHeader: (name: string, value: string | number) => void headers.set(name, String(value)),
    removeHeader: (name: string) => void headers.delete(name),
  };
  helmet(options)({} as IncomingMessage, response as unknown as ServerResponse, () => undefined);
  return [...headers];
}

/**
 * Every response of `server` starts out with the security headers, set on the Node response before Fastify sees the
 * request: routes and 404s, and Fastify's own replies that run no hook (the 400 for a URL it cannot decode, 414, the
 * 503 while closing), which a plugin's onRequest hook (@fastify/helmet's) never reaches. A route may still set its own.
 */
export function sendSecurityHeaders(server: Server): void {
  server.prependListener('request', (_request: IncomingMessage, response: ServerResponse) => {
    for (const [name, value] of SECURITY_HEADERS) response.setHeader(name, value);
  });
}

/** Node's parse errors Fastify answers before there is a request, by code; any other is a 400. */
const CLIENT_ERRORS: Readonly<Record<string, { status: number; message: string }>> = {
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, message: 'The request did not arrive within the time allowed' },
  HPE_HEADER_OVERFLOW: { status: 431, message: 'The request headers are larger than the server accepts' },
};
const MALFORMED = { status: 400, message: 'The request is not valid HTTP' };

/**
 * Fastify's `clientErrorHandler`: what its default one answers (400, 408, 431, then the connection closes), with the
 * security headers and a JSON body shaped like the app's other errors.
 */
export function answerClientError(error: NodeJS.ErrnoException, socket: Socket): void {
  // A connection the client reset has nobody to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const { status, message } = CLIENT_ERRORS[error.code ?? ''] ?? MALFORMED;
  const reason = STATUS_CODES[status] ?? 'Error';
  const body = JSON.stringify({ statusCode: status, error: reason, message });
  const headers: Header[] = [
    ...SECURITY_HEADERS,
    ['Content-Type', 'application/json; charset=utf-8'],
    ['Content-Length', String(Buffer.byteLength(body))],
    ['Connection', 'close'],
  ];
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${reason}\r\n${headers.map(([name, value]) => `${name}: ${value}`).join('\r\n')}\r\n\r\n${body}`);
  }
  socket.destroy(error);
}
