// The app's log as operators read it: one JSON object a line (pino), parsed.

/** pino's numeric levels. */
export const LEVEL = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;

export interface LogEntry {
  level: number;
  time: string;
  msg?: string;
  context?: string;
  reqId?: string;
  req?: { method: string; url: string; headers: Record<string, string>; remoteAddress?: string };
  res?: { statusCode: number };
  responseTime?: number;
  [field: string]: unknown;
}

/** Every log line of `output` parsed; a line that starts like a JSON object but is not one fails the test. */
export function logEntries(output: string): LogEntry[] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogEntry);
}

/** The completion line pino-http writes when a request ends (exactly one per request). */
export function isRequestLine(entry: LogEntry): boolean {
  return entry.req !== undefined && entry.res !== undefined && typeof entry.responseTime === 'number';
}

/** The fields of a circuit breaker transition, as logged by the breaker (a structured object, not a message). */
export function transitionsIn(entries: LogEntry[]): Array<{ breaker: unknown; from: unknown; to: unknown }> {
  return entries.filter((entry) => entry['event'] === 'circuit_breaker_transition').map(({ breaker, from, to }) => ({ breaker, from, to }));
}

export interface CapturedOutput {
  /** Everything written to stdout and stderr since installed or last cleared. */
  text(): string;
  clear(): void;
  restore(): void;
}

/**
 * Records every write to stdout and stderr (pino writes through process.stdout, see logDestination). The app's log lines
 * are kept out of the test output; anything else (Jest's reporter runs in this process with --runInBand) passes through.
 */
export function captureOutput(): CapturedOutput {
  let written = '';
  const restorers = (['stdout', 'stderr'] as const).map((name) => {
    const stream = process[name];
    const original = stream.write;
    const capture = (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      written += text;
      if (text.startsWith('{"level":')) return true;
      return (original as (chunk: string | Uint8Array, ...rest: unknown[]) => boolean).call(stream, chunk, ...rest);
    };
    stream.write = capture;
    return () => {
      stream.write = original;
    };
  });
  return {
    text: () => written,
    clear: () => {
      written = '';
    },
    restore: () => restorers.forEach((restore) => restore()),
  };
}

/** Raw output lines mentioning `text`, for plain (non-JSON) lines such as a start-up failure. */
export function linesContaining(output: string, text: string): string[] {
  return output.split('\n').filter((line) => line.includes(text));
}
