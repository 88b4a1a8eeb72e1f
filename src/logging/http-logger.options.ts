import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ConfigType } from '@nestjs/config';
import { type DestinationStream, type LevelWithSilent, stdTimeFunctions } from 'pino';
import type { Options, StdSerializedResults } from 'pino-http';
import { prettyFactory } from 'pino-pretty';
import { CLIENT_CLOSED_REQUEST } from '../assistant/client-gone.filter.js';
import type { loggingConfig } from '../config/logging.config.js';
import { redactCredentialsInQuery } from './url-redaction.js';

type LoggingConfig = ConfigType<typeof loggingConfig>;

/** Secrets are removed by configuration, so no call site has to remember to. */
const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  '*.authorization',
  '*.token',
  '*.hfToken',
  '*.HF_TOKEN',
];
const REDACTION_CENSOR = '[redacted]';

/** Routes machines poll every few seconds (probes, dashboards, scrapers): at debug, or they would drown the log. */
const POLLED_PATHS = ['/health', '/metrics'];

function isPolled(url: string | undefined): boolean {
  const path = (url ?? '').split('?')[0] ?? '';
  return POLLED_PATHS.some((polled) => path === polled || path.startsWith(`${polled}/`));
}

/** The connection closed before the whole response was sent: the client went away (mid-body, mid-answer, mid-stream). */
function clientLeft(res: ServerResponse): boolean {
  return !res.writableFinished;
}

/** The level of a request's completion line: a client that went away is no error of the server's. */
export function requestLogLevel(req: IncomingMessage, res: ServerResponse, error?: Error): LevelWithSilent {
  if (isPolled(req.url)) return 'debug';
  if (clientLeft(res)) return 'info';
  if (error || res.statusCode >= 500) return 'error';
  if (res.statusCode >= 400) return 'warn';
  return 'info';
}

/** pino-http options: one completion line per request with its `reqId`, which every log made during the request carries too. */
export function httpLoggerOptions(config: LoggingConfig): Options {
  return {
    level: config.level,
    timestamp: stdTimeFunctions.isoTime,
    redact: { paths: REDACTED_PATHS, censor: REDACTION_CENSOR },
    // The id is Fastify's own (see createHttpAdapter), handed to the raw request by middie: pino-http uses it as it is.
    // Logs made during a request carry only its reqId; the completion line alone carries the request itself.
    quietReqLogger: true,
    customLogLevel: requestLogLevel,
    // The caller's API key id (never the key), when the key guard identified one.
    customProps: (req: IncomingMessage) => {
      const keyId = (req as IncomingMessage & { apiKeyId?: string }).apiKeyId;
      return keyId === undefined ? {} : { keyId };
    },
    serializers: {
      req: (req: StdSerializedResults['req']) => ({
        method: req.method,
        // A key a caller put in the query string (`?api_key=…`) is censored like the headers above.
        url: redactCredentialsInQuery(req.url, REDACTION_CENSOR),
        headers: req.headers,
        remoteAddress: req.remoteAddress,
      }),
      // nginx's 499 for a client that went away, rather than whatever status the unsent response had.
      res: (res: StdSerializedResults['res']) => ({ statusCode: clientLeft(res.raw) ? CLIENT_CLOSED_REQUEST : res.statusCode }),
    },
  };
}

/**
 * Through `process.stdout` rather than pino's own fd writer: synchronous for files and pipes on Linux, so nothing is
 * lost at process.exit, and whatever wraps process.stdout (a test's capture) sees every line.
 */
export function logDestination(config: LoggingConfig): DestinationStream {
  if (!config.pretty) return process.stdout;
  // Formatted in this thread, line by line, so a developer's terminal gets the last lines before exit too.
  const prettify = prettyFactory({ singleLine: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
  return { write: (line: string) => void process.stdout.write(prettify(line)) };
}
