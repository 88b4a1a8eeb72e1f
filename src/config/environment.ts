import 'reflect-metadata';
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { plainToInstance, Transform } from 'class-transformer';
import {
  IsBoolean,
  IsIn,
  IsInt,
  IsNumber,
  IsOptional,
  IsPositive,
  IsString,
  IsUrl,
  Matches,
  ValidateBy,
  Max,
  Min,
  MinLength,
  validateSync,
} from 'class-validator';
import { duplicateBreakerName, fallbackModelsProblem, type ModelTargetConfig, modelTargets } from './model-targets.js';

/** Thrown at start-up when a variable does not parse; its message is one line naming the variable. */
export class InvalidEnvironmentError extends Error {
  constructor(
    readonly variable: string,
    readonly problem: string,
  ) {
    super(`Invalid environment variable ${variable}: ${problem}`);
    this.name = 'InvalidEnvironmentError';
  }
}

/** pino's levels, from the fewest lines to the most; `silent` writes none. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const BOOLEAN_WORDS: Readonly<Record<string, boolean>> = { true: true, '1': true, yes: true, false: false, '0': false, no: false };

/** "false" must mean false; class-transformer's implicit conversion would make it true. */
const ToBoolean = () =>
  Transform(({ obj, key }: { obj: Record<string, unknown>; key: string }) => {
    const raw = obj[key];
    if (typeof raw === 'boolean') return raw;
    return BOOLEAN_WORDS[String(raw).trim().toLowerCase()] ?? raw;
  });

const API_KEY = '(?:sha256:[0-9a-fA-F]{64}|(?!sha256:)[^,\\s]+)';
const API_KEYS_PATTERN = new RegExp(`^\\s*${API_KEY}(?:\\s*,\\s*${API_KEY})*\\s*$`);
/** Variables whose value is a secret: an error names them but never shows the value. */
const SECRET_VARIABLES = new Set(['HF_TOKEN', 'ASSISTANT_API_KEYS']);

/** An empty number (`PORT=`) is an error, not 0: implicit conversion would make it 0 (a random port, no temperature). */
const EmptyIsNotANumber = () =>
  Transform(({ obj, key, value }: { obj: Record<string, unknown>; key: string; value: unknown }) =>
    typeof obj[key] === 'string' && obj[key].trim() === '' ? Number.NaN : value,
  );

/** Node's timers hold at most 2^31 - 1 ms; a longer delay fires after 1 ms. */
const MAX_TIMER_SECONDS = 2_147_483;
/** A time-out that would round to 0 ms is no time-out. */
const MIN_TIMER_SECONDS = 0.001;

/** Which proxies in front of the app are trusted to say who the client is: Fastify's `trustProxy`. */
export type TrustProxy = boolean | string[];

/** proxy-addr's names for the private ranges (uniquelocal: 10/8, 172.16/12, 192.168/16, fc00::/7). */
const NAMED_RANGES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/**
 * TRUST_PROXY: `true` (the left-most X-Forwarded-For entry, which a client can forge unless the proxy replaces the
 * header), `false`, or the proxies' addresses / CIDR ranges / range names, comma-separated: the client is then the
 * nearest address in X-Forwarded-For that is not one of them. Undefined when the value is none of these.
 */
export function parseTrustProxy(raw: string): TrustProxy | undefined {
  const word = BOOLEAN_WORDS[raw.trim().toLowerCase()];
  if (word !== undefined) return word;
  const entries = raw.split(',').map((entry) => entry.trim());
  return entries.every((entry) => NAMED_RANGES.has(entry) || isAddressOrRange(entry)) ? entries : undefined;
}

function isAddressOrRange(entry: string): boolean {
  const [address = '', prefix, ...rest] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
}

/** An empty variable (`HF_TOKEN=`) means unset, as in most twelve-factor tooling. */
const EmptyAsUnset = () =>
  // The raw value: implicit conversion has already made an empty number variable 0 in `value`.
  Transform(({ obj, key, value }: { obj: Record<string, unknown>; key: string; value: unknown }) =>
    typeof obj[key] === 'string' && obj[key].trim() === '' ? undefined : value,
  );

/**
 * Every variable of the contract, with its embedded default. class-validator runs decorators right to
 * left and stops at the first error, so each type check stands last.
 */
export class Environment {
  @IsIn(['development', 'production', 'test'])
  NODE_ENV: 'development' | 'production' | 'test' = 'development';

  @Min(0)
  @Max(65535)
  @EmptyIsNotANumber()
  @IsInt()
  PORT: number = 3000;

  @MinLength(1)
  @IsString()
  HOST: string = '0.0.0.0';

  /** GET /metrics on a listener of its own (and no longer on PORT), so the public Service need not expose it. */
  @EmptyAsUnset()
  @IsOptional()
  @Min(1)
  @Max(65535)
  @IsInt()
  METRICS_PORT?: number;

  @EmptyAsUnset()
  @IsOptional()
  @IsString()
  HF_TOKEN?: string;

  @MinLength(1)
  @IsString()
  HF_MODEL: string = 'meta-llama/Llama-3.1-8B-Instruct';

  @EmptyAsUnset()
  @IsOptional()
  @IsUrl({ protocols: ['http', 'https'], require_tld: false, require_protocol: true })
  HF_ENDPOINT_URL?: string;

  /** More targets after HF_MODEL, tried in order: `model[:provider]` or `model@<base URL>`, comma-separated (model-targets.ts). */
  @ValidateBy({
    name: 'isFallbackModels',
    validator: {
      validate: (value: unknown) => typeof value === 'string' && fallbackModelsProblem(value) === undefined,
      defaultMessage: (args) =>
        typeof args?.value === 'string' ? (fallbackModelsProblem(args.value) ?? 'is invalid') : 'must be a string',
    },
  })
  @IsString()
  HF_FALLBACK_MODELS: string = '';

  @Min(1)
  @Max(100_000)
  @EmptyIsNotANumber()
  @IsInt()
  HF_MAX_NEW_TOKENS: number = 512;

  @Min(0)
  @Max(2)
  @EmptyIsNotANumber()
  @IsNumber()
  HF_TEMPERATURE: number = 0.2;

  @ToBoolean()
  @IsBoolean()
  CIRCUIT_BREAKER_ENABLED: boolean = true;

  @Min(1)
  @EmptyIsNotANumber()
  @IsInt()
  CIRCUIT_BREAKER_FAIL_THRESHOLD: number = 5;

  @Max(MAX_TIMER_SECONDS)
  @Min(MIN_TIMER_SECONDS)
  @EmptyIsNotANumber()
  @IsNumber()
  CIRCUIT_BREAKER_TIMEOUT_SECONDS: number = 30;

  @Max(MAX_TIMER_SECONDS)
  @Min(MIN_TIMER_SECONDS)
  @EmptyIsNotANumber()
  @IsNumber()
  CIRCUIT_BREAKER_RESET_TIMEOUT: number = 30;

  @Matches(/^[a-z0-9][a-z0-9_.-]*$/i, { message: 'must be letters, digits, "_", "-" or "."' })
  CIRCUIT_BREAKER_NAME: string = 'huggingface';

  @Min(1)
  @Max(100_000)
  @EmptyIsNotANumber()
  @IsInt()
  CIRCUIT_BREAKER_MAX_CONCURRENT: number = 100;

  @Max(MAX_TIMER_SECONDS)
  @Min(MIN_TIMER_SECONDS)
  @EmptyIsNotANumber()
  @IsNumber()
  CIRCUIT_BREAKER_MAX_OPEN_SECONDS: number = 300;

  @Min(1)
  @Max(100)
  @EmptyIsNotANumber()
  @IsNumber()
  CIRCUIT_BREAKER_RESET_BACKOFF: number = 1;

  /** Also open when at least this fraction of the calls in the window failed (0 < r <= 1); 0 = off. */
  @Min(0)
  @Max(1)
  @EmptyIsNotANumber()
  @IsNumber()
  CIRCUIT_BREAKER_FAILURE_RATE: number = 0;

  /** The failure-rate window, counted in ten buckets of a tenth of it each. */
  @Max(MAX_TIMER_SECONDS)
  @Min(MIN_TIMER_SECONDS)
  @EmptyIsNotANumber()
  @IsNumber()
  CIRCUIT_BREAKER_WINDOW_SECONDS: number = 30;

  /** Calls the window must hold before the failure rate may open the circuit. */
  @Min(1)
  @Max(1_000_000)
  @EmptyIsNotANumber()
  @IsInt()
  CIRCUIT_BREAKER_MIN_CALLS: number = 20;

  /** A streamed answer: the longest gap between two tokens of the model's (the first is bounded by the breaker's time-out). */
  @Max(MAX_TIMER_SECONDS)
  @Min(MIN_TIMER_SECONDS)
  @EmptyIsNotANumber()
  @IsNumber()
  HF_STREAM_IDLE_TIMEOUT_SECONDS: number = 10;

  @EmptyAsUnset()
  @IsOptional()
  @IsUrl({ protocols: ['redis', 'rediss'], require_tld: false, require_protocol: true })
  REDIS_URL?: string;

  /** With REDIS_URL: every replica using that Redis shares one circuit per breaker name; false = each its own. */
  @ToBoolean()
  @IsBoolean()
  CIRCUIT_BREAKER_SHARED: boolean = true;

  /** Comma-separated API keys, each plain or `sha256:<64 hex digits>` (so the config need not hold the key itself). */
  @EmptyAsUnset()
  @IsOptional()
  @Matches(API_KEYS_PATTERN, { message: 'must be comma-separated keys, each plain (no spaces or commas) or sha256:<64 hex digits>' })
  @IsString()
  ASSISTANT_API_KEYS?: string;

  /** With NODE_ENV=production, start-up refuses to serve without ASSISTANT_API_KEYS unless this is true. */
  @ToBoolean()
  @IsBoolean()
  ASSISTANT_ALLOW_ANONYMOUS: boolean = false;

  /** Answer requests a minute per API key (per client address without keys), across the fleet with Redis; 0 = no limit. */
  @Min(0)
  @Max(1_000_000)
  @EmptyIsNotANumber()
  @IsInt()
  RATE_LIMIT_PER_MINUTE: number = 0;

  /** Model calls in flight per API key (per client address without keys), on each replica; 0 = no limit. */
  @Min(0)
  @Max(100_000)
  @EmptyIsNotANumber()
  @IsInt()
  RATE_LIMIT_CONCURRENT: number = 0;

  @ValidateBy({
    name: 'isTrustProxy',
    validator: {
      validate: (value: unknown) => typeof value === 'string' && parseTrustProxy(value) !== undefined,
      defaultMessage: () => 'must be true, false, or comma-separated proxy addresses, CIDR ranges or loopback / linklocal / uniquelocal',
    },
  })
  @IsString()
  TRUST_PROXY: string = 'false';

  @IsPositive()
  @EmptyIsNotANumber()
  @IsInt()
  CACHE_TTL_SECONDS: number = 3600;

  @IsPositive()
  @EmptyIsNotANumber()
  @IsInt()
  CACHE_STALE_TTL_SECONDS: number = 86_400;

  @MinLength(1)
  @IsString()
  KNOWLEDGE_DIR: string = './data/knowledge';

  /** At most 10 000 so a valid body always fits the 64 KiB body limit (see app.setup.ts). */
  @Min(1)
  @Max(10_000)
  @EmptyIsNotANumber()
  @IsInt()
  ASSISTANT_MAX_QUERY_LENGTH: number = 2000;

  @Max(MAX_TIMER_SECONDS)
  @Min(0)
  @EmptyIsNotANumber()
  @IsNumber()
  SHUTDOWN_DRAIN_SECONDS: number = 5;

  /** The longest one request spends on model calls, every target and hedge together; then the fallbacks answer. */
  @Max(MAX_TIMER_SECONDS)
  @Min(MIN_TIMER_SECONDS)
  @EmptyIsNotANumber()
  @IsNumber()
  ASSISTANT_DEADLINE_SECONDS: number = 30;

  /** A target without a first token after this long gets a hedge: the next admitted target is asked too; 0 = off. */
  @Max(MAX_TIMER_SECONDS)
  @Min(0)
  @EmptyIsNotANumber()
  @IsNumber()
  HF_HEDGE_AFTER_SECONDS: number = 0;

  /** Identical questions in flight share one model call (on this replica, and across the fleet with REDIS_URL). */
  @ToBoolean()
  @IsBoolean()
  ASSISTANT_COALESCE: boolean = true;

  /** With REDIS_URL: how long a replica waits for another replica's answer to the same question; 0 = it never waits. */
  @Max(MAX_TIMER_SECONDS)
  @Min(0)
  @EmptyIsNotANumber()
  @IsNumber()
  CACHE_COALESCE_WAIT_SECONDS: number = 10;

  @IsIn(LOG_LEVELS)
  LOG_LEVEL: LogLevel = 'info';

  /** Serve /docs and /docs/json. Unset: on, but off with NODE_ENV=production (validateEnvironment fills it in). */
  @IsOptional()
  // The transforms apply in the order written: an empty value must end unset, not as the word ToBoolean left.
  @ToBoolean()
  @EmptyAsUnset()
  @IsBoolean()
  DOCS_ENABLED!: boolean;
}

/** Parses and validates raw variables (strings) into typed values; throws on the first bad one. */
export function validateEnvironment(raw: Record<string, unknown>): Environment {
  const env = plainToInstance(Environment, raw, { enableImplicitConversion: true, exposeDefaultValues: true });
  const [firstError] = validateSync(env, { whitelist: false, stopAtFirstError: true });
  if (firstError) {
    const problem = Object.values(firstError.constraints ?? {})[0] ?? 'is invalid';
    const shown = SECRET_VARIABLES.has(firstError.property) ? '' : ` (got "${withoutPassword(String(raw[firstError.property]))}")`;
    throw new InvalidEnvironmentError(firstError.property, `${problem.replace(`${firstError.property} `, '')}${shown}`);
  }
  if (env.METRICS_PORT !== undefined && env.METRICS_PORT === env.PORT) {
    throw new InvalidEnvironmentError('METRICS_PORT', `must differ from PORT (${env.PORT})`);
  }
  if (env.CIRCUIT_BREAKER_MAX_OPEN_SECONDS < env.CIRCUIT_BREAKER_RESET_TIMEOUT) {
    throw new InvalidEnvironmentError(
      'CIRCUIT_BREAKER_MAX_OPEN_SECONDS',
      `must be at least CIRCUIT_BREAKER_RESET_TIMEOUT (${env.CIRCUIT_BREAKER_RESET_TIMEOUT})`,
    );
  }
  if (env.CACHE_STALE_TTL_SECONDS < env.CACHE_TTL_SECONDS) {
    throw new InvalidEnvironmentError('CACHE_STALE_TTL_SECONDS', `must be at least CACHE_TTL_SECONDS (${env.CACHE_TTL_SECONDS})`);
  }
  if (env.NODE_ENV === 'production' && env.ASSISTANT_API_KEYS === undefined && !env.ASSISTANT_ALLOW_ANONYMOUS) {
    throw new InvalidEnvironmentError(
      'ASSISTANT_API_KEYS',
      'must be set with NODE_ENV=production (comma-separated keys, plain or sha256:<hex>), or set ASSISTANT_ALLOW_ANONYMOUS=true to serve without keys',
    );
  }
  env.DOCS_ENABLED ??= env.NODE_ENV !== 'production';
  const shared = duplicateBreakerName(targetsOf(env));
  if (shared !== undefined) {
    throw new InvalidEnvironmentError('HF_FALLBACK_MODELS', `two entries would share the breaker "${shared}"; name each model once`);
  }
  return env;
}

/** The model targets in order: HF_MODEL, then HF_FALLBACK_MODELS (see model-targets.ts). */
export function targetsOf(env: Environment): ModelTargetConfig[] {
  return modelTargets(
    { model: env.HF_MODEL, breakerName: env.CIRCUIT_BREAKER_NAME, ...(env.HF_ENDPOINT_URL ? { endpointUrl: env.HF_ENDPOINT_URL } : {}) },
    env.HF_FALLBACK_MODELS,
  );
}

/** A URL's password never reaches a log line: `redis://user:secret@host` is shown as `redis://user:***@host`. */
function withoutPassword(value: string): string {
  // Wherever a URL stands in the value (HF_FALLBACK_MODELS holds `model@<URL>` entries, comma-separated).
  return value.replace(/([a-z][\w+.-]*:\/\/[^/:@\s,]*:)[^,]*@/gi, '$1***@');
}

/** The validated environment as this process sees it now (env files are merged in by ConfigModule first). */
export function environment(): Environment {
  return validateEnvironment(process.env);
}

/** `.env.<NODE_ENV>`; the real environment wins over the file. */
export function envFilePath(): string {
  return `.env.${process.env.NODE_ENV ?? 'development'}`;
}

/** Merges `.env.<NODE_ENV>` into process.env (variables already set win) and validates the result. */
export function loadEnvironment(): Environment {
  const path = envFilePath();
  if (existsSync(path)) process.loadEnvFile(path);
  return validateEnvironment(process.env);
}
