import type { IncomingMessage, ServerResponse } from 'node:http';
import { stripVTControlCharacters } from 'node:util';
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { pino } from 'pino';
import { httpLoggerOptions, logDestination, requestLogLevel } from './http-logger.options.js';

const request = (url: string) => ({ url }) as IncomingMessage;
const response = (statusCode: number, writableFinished = true) => ({ statusCode, writableFinished }) as ServerResponse;

describe('requestLogLevel', () => {
  it.each([
    ['/health/live', 200],
    ['/health/ready', 503],
    ['/health', 503],
    ['/health/circuit-breaker?verbose=1', 200],
    ['/metrics', 200],
  ])('logs a polled route (%s, %i) at debug, whatever its status', (url, status) => {
    expect(requestLogLevel(request(url), response(status))).toBe('debug');
  });

  it('logs a success at info, a client error at warn and a server error at error', () => {
    expect(requestLogLevel(request('/assistant/query'), response(200))).toBe('info');
    expect(requestLogLevel(request('/assistant/query'), response(400))).toBe('warn');
    expect(requestLogLevel(request('/assistant/query'), response(503))).toBe('error');
    expect(requestLogLevel(request('/assistant/query'), response(200), new Error('socket hang up'))).toBe('error');
  });

  it('logs a request whose client went away before the response was sent at info, whatever status it was given', () => {
    expect(requestLogLevel(request('/assistant/query'), response(200, false))).toBe('info');
    expect(requestLogLevel(request('/assistant/query'), response(500, false), new Error('write EPIPE'))).toBe('info');
    expect(requestLogLevel(request('/health/ready'), response(200, false))).toBe('debug');
  });

  it('does not mistake a route that merely starts with "health" for a probe', () => {
    expect(requestLogLevel(request('/healthy'), response(200))).toBe('info');
  });
});

describe('httpLoggerOptions redaction', () => {
  function logged(entry: Record<string, unknown>): string {
    const lines: string[] = [];
    const { level, redact } = httpLoggerOptions({ level: 'info', pretty: false });
    pino({ level, redact }, { write: (line: string) => void lines.push(line) }).info(entry, 'entry');
    return lines.join('');
  }

  it('censors the authorization and cookie request headers', () => {
    const line = logged({ req: { headers: { authorization: 'Bearer hf_SECRET', cookie: 'session=SECRET', accept: '*/*' } } });
    expect(line).not.toContain('SECRET');
    expect(JSON.parse(line)).toMatchObject({ req: { headers: { authorization: '[redacted]', cookie: '[redacted]', accept: '*/*' } } });
  });

  it('censors tokens wherever an object one level down carries them', () => {
    const line = logged({
      config: { token: 'SECRET', hfToken: 'SECRET', model: 'm' },
      env: { HF_TOKEN: 'SECRET' },
      upstream: { authorization: 'SECRET' },
    });
    expect(line).not.toContain('SECRET');
    expect(JSON.parse(line)).toMatchObject({
      config: { token: '[redacted]', hfToken: '[redacted]', model: 'm' },
      env: { HF_TOKEN: '[redacted]' },
    });
  });
});

describe('logDestination', () => {
  afterEach(() => {
    jest.restoreAllMocks();
  });

  it('hands JSON lines to process.stdout unchanged outside development', () => {
    expect(logDestination({ level: 'info', pretty: false })).toBe(process.stdout);
  });

  it('writes each line to process.stdout as one readable line, in development', () => {
    const written: string[] = [];
    jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    const line = JSON.stringify({ level: 40, time: Date.now(), pid: 4242, hostname: 'box-7', reqId: 'req-1', msg: 'Redis unavailable' });

    logDestination({ level: 'info', pretty: true }).write(`${line}\n`);

    expect(written).toHaveLength(1);
    const text = stripVTControlCharacters(written[0] ?? '');
    expect(text).toMatch(/^\[\d{2}:\d{2}:\d{2}\.\d{3}\] WARN: Redis unavailable/);
    expect(text).toContain('"reqId":"req-1"');
    expect(text).not.toContain('4242');
    expect(text).not.toContain('box-7');
    expect(text.trimEnd().split('\n')).toHaveLength(1);
  });
});
