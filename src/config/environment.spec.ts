import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseEnv } from 'node:util';
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import {
  envFilePath,
  InvalidEnvironmentError,
  loadEnvironment,
  parseTrustProxy,
  type TrustProxy,
  validateEnvironment,
} from './environment.js';

function rejectionOf(raw: Record<string, string>): InvalidEnvironmentError {
  try {
    validateEnvironment(raw);
  } catch (error) {
    if (error instanceof InvalidEnvironmentError) return error;
    throw error;
  }
  throw new Error('expected the environment to be rejected');
}

describe('validateEnvironment', () => {
  it('fills every variable with its embedded default when nothing is set', () => {
    const env = validateEnvironment({});
    expect(env).toMatchObject({
      PORT: 3000,
      HOST: '0.0.0.0',
      HF_MAX_NEW_TOKENS: 512,
      HF_TEMPERATURE: 0.2,
      CIRCUIT_BREAKER_ENABLED: true,
      CIRCUIT_BREAKER_FAIL_THRESHOLD: 5,
      CIRCUIT_BREAKER_TIMEOUT_SECONDS: 30,
      CIRCUIT_BREAKER_RESET_TIMEOUT: 30,
      CIRCUIT_BREAKER_NAME: 'huggingface',
      CACHE_TTL_SECONDS: 3600,
      CACHE_STALE_TTL_SECONDS: 86400,
      KNOWLEDGE_DIR: './data/knowledge',
      ASSISTANT_MAX_QUERY_LENGTH: 2000,
      LOG_LEVEL: 'info',
    });
    expect(env.HF_TOKEN).toBeUndefined();
    expect(env.HF_ENDPOINT_URL).toBeUndefined();
    expect(env.REDIS_URL).toBeUndefined();
  });

  it('parses numbers, fractions and booleans from their string form', () => {
    const env = validateEnvironment({
      PORT: '8080',
      CIRCUIT_BREAKER_TIMEOUT_SECONDS: '0.5',
      CIRCUIT_BREAKER_RESET_TIMEOUT: '1.5',
      CIRCUIT_BREAKER_ENABLED: 'false',
      HF_TEMPERATURE: '0',
    });
    expect(env.PORT).toBe(8080);
    expect(env.CIRCUIT_BREAKER_TIMEOUT_SECONDS).toBe(0.5);
    expect(env.CIRCUIT_BREAKER_RESET_TIMEOUT).toBe(1.5);
    expect(env.CIRCUIT_BREAKER_ENABLED).toBe(false);
    expect(env.HF_TEMPERATURE).toBe(0);
  });

  it('treats an empty variable as unset', () => {
    const env = validateEnvironment({ HF_TOKEN: '', REDIS_URL: ' ', HF_ENDPOINT_URL: '', METRICS_PORT: '' });
    expect(env.METRICS_PORT).toBeUndefined();
    expect(env.HF_TOKEN).toBeUndefined();
    expect(env.REDIS_URL).toBeUndefined();
    expect(env.HF_ENDPOINT_URL).toBeUndefined();
  });

  it.each([
    ['PORT', 'abc'],
    ['CIRCUIT_BREAKER_FAIL_THRESHOLD', '-1'],
    ['CIRCUIT_BREAKER_FAIL_THRESHOLD', '2.5'],
    ['CIRCUIT_BREAKER_TIMEOUT_SECONDS', 'soon'],
    ['CIRCUIT_BREAKER_RESET_TIMEOUT', '0'],
    ['CIRCUIT_BREAKER_ENABLED', 'maybe'],
    ['HF_TEMPERATURE', '3'],
    ['HF_ENDPOINT_URL', 'not a url'],
    ['REDIS_URL', 'http://127.0.0.1:6379'],
    ['CACHE_TTL_SECONDS', 'ten'],
    ['ASSISTANT_MAX_QUERY_LENGTH', '0'],
    ['LOG_LEVEL', 'verbose'],
    ['PORT', ''],
    ['HF_TEMPERATURE', ' '],
    ['CIRCUIT_BREAKER_TIMEOUT_SECONDS', '0.0004'],
    ['CIRCUIT_BREAKER_TIMEOUT_SECONDS', '2147484'],
    ['CIRCUIT_BREAKER_RESET_TIMEOUT', '3000000'],
    ['SHUTDOWN_DRAIN_SECONDS', '2147484'],
    ['CIRCUIT_BREAKER_MAX_CONCURRENT', '0'],
    ['CIRCUIT_BREAKER_MAX_OPEN_SECONDS', ''],
    ['CIRCUIT_BREAKER_RESET_BACKOFF', '0.5'],
    ['METRICS_PORT', '70000'],
    ['METRICS_PORT', '3000'],
    ['RATE_LIMIT_PER_MINUTE', '-1'],
    ['RATE_LIMIT_PER_MINUTE', '1.5'],
    ['RATE_LIMIT_PER_MINUTE', ''],
    ['HF_STREAM_IDLE_TIMEOUT_SECONDS', '0'],
    ['HF_STREAM_IDLE_TIMEOUT_SECONDS', ''],
    ['TRUST_PROXY', 'maybe'],
    ['TRUST_PROXY', '10.0.0.0/33'],
    ['TRUST_PROXY', '2'],
    ['TRUST_PROXY', '10.0.0.1,,10.0.0.2'],
  ])('stops start-up with one line naming %s when it is %j', (variable, value) => {
    const error = rejectionOf({ [variable]: value });
    expect(error.variable).toBe(variable);
    expect(error.message).toContain(variable);
    expect(error.message).not.toContain('\n');
  });

  it.each(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])('accepts LOG_LEVEL=%s', (level) => {
    expect(validateEnvironment({ LOG_LEVEL: level }).LOG_LEVEL).toBe(level);
  });

  it('rejects a longest open period shorter than the reset period', () => {
    const error = rejectionOf({ CIRCUIT_BREAKER_RESET_TIMEOUT: '60', CIRCUIT_BREAKER_MAX_OPEN_SECONDS: '30' });
    expect(error.variable).toBe('CIRCUIT_BREAKER_MAX_OPEN_SECONDS');
  });

  it('rejects a stale TTL shorter than the fresh TTL', () => {
    expect(rejectionOf({ CACHE_TTL_SECONDS: '600', CACHE_STALE_TTL_SECONDS: '60' }).variable).toBe('CACHE_STALE_TTL_SECONDS');
  });

  it('accepts the longest delay Node timers can hold, and the new breaker variables with their defaults', () => {
    expect(validateEnvironment({ CIRCUIT_BREAKER_TIMEOUT_SECONDS: '2147483' }).CIRCUIT_BREAKER_TIMEOUT_SECONDS).toBe(2_147_483);
    expect(validateEnvironment({})).toMatchObject({
      CIRCUIT_BREAKER_MAX_CONCURRENT: 100,
      CIRCUIT_BREAKER_MAX_OPEN_SECONDS: 300,
      CIRCUIT_BREAKER_RESET_BACKOFF: 1,
      HF_STREAM_IDLE_TIMEOUT_SECONDS: 10,
    });
  });

  it.each([
    ['REDIS_URL', 'redis://default:s3cret-pass@redis host:6379'],
    ['REDIS_URL', 'redis://default:s3cret@pass@cache:6379'],
    ['REDIS_URL', 'redis://default:s3cret pass@cache:6379'],
    ['HF_ENDPOINT_URL', 'https://user:s3cret-pass@not a host/'],
  ])('names a bad %s without its password (%j)', (variable, value) => {
    const error = rejectionOf({ [variable]: value });
    expect(error.variable).toBe(variable);
    expect(error.message).not.toMatch(/s3cret|pass@/);
    expect(error.message).toContain(':***@');
  });

  it('has no rate limit and trusts no proxy by default', () => {
    expect(validateEnvironment({})).toMatchObject({ RATE_LIMIT_PER_MINUTE: 0, TRUST_PROXY: 'false' });
    expect(validateEnvironment({ RATE_LIMIT_PER_MINUTE: '120' }).RATE_LIMIT_PER_MINUTE).toBe(120);
  });

  it.each<[string, TrustProxy]>([
    ['false', false],
    ['true', true],
    [' TRUE ', true],
    ['uniquelocal', ['uniquelocal']],
    ['10.0.0.0/8, 192.168.1.7,loopback', ['10.0.0.0/8', '192.168.1.7', 'loopback']],
    ['fd00::/8,::1', ['fd00::/8', '::1']],
  ])('TRUST_PROXY=%j is Fastify’s trustProxy %j', (raw, setting) => {
    expect(validateEnvironment({ TRUST_PROXY: raw }).TRUST_PROXY).toBe(raw);
    expect(parseTrustProxy(raw)).toEqual(setting);
  });

  it('accepts API keys given plain or as sha256:<hex>, comma-separated', () => {
    const keys = `alpha-key, sha256:${'ab'.repeat(32)} ,beta-key`;
    expect(validateEnvironment({ ASSISTANT_API_KEYS: keys }).ASSISTANT_API_KEYS).toBe(keys);
  });

  it.each(['sha256:abc', `sha256:${'zz'.repeat(32)}`, 'key with spaces', 'alpha,,beta'])(
    'rejects ASSISTANT_API_KEYS=%j naming the variable, never showing its value',
    (value) => {
      const error = rejectionOf({ ASSISTANT_API_KEYS: value });
      expect(error.variable).toBe('ASSISTANT_API_KEYS');
      expect(error.message).not.toContain(value);
    },
  );

  it.each<[Record<string, string>, boolean]>([
    [{}, true],
    [{ NODE_ENV: 'test' }, true],
    [{ NODE_ENV: 'production', ASSISTANT_API_KEYS: 'k' }, false],
    [{ NODE_ENV: 'production', ASSISTANT_API_KEYS: 'k', DOCS_ENABLED: 'true' }, true],
    [{ NODE_ENV: 'production', ASSISTANT_API_KEYS: 'k', DOCS_ENABLED: '' }, false],
    [{ DOCS_ENABLED: 'no' }, false],
  ])('serves the API documentation with %j: DOCS_ENABLED is %s', (raw, enabled) => {
    expect(validateEnvironment(raw).DOCS_ENABLED).toBe(enabled);
  });

  it('rejects a DOCS_ENABLED that is not a boolean, naming it', () => {
    expect(rejectionOf({ DOCS_ENABLED: 'sometimes' }).variable).toBe('DOCS_ENABLED');
  });

  it.each<[string, Record<string, string>]>([
    ['no keys', {}],
    ['an empty ASSISTANT_API_KEYS', { ASSISTANT_API_KEYS: ' ' }],
    ['ASSISTANT_ALLOW_ANONYMOUS=false', { ASSISTANT_ALLOW_ANONYMOUS: 'false' }],
  ])('refuses NODE_ENV=production with %s, saying to set ASSISTANT_API_KEYS or ASSISTANT_ALLOW_ANONYMOUS=true', (_case, raw) => {
    const error = rejectionOf({ NODE_ENV: 'production', ...raw });
    expect(error.variable).toBe('ASSISTANT_API_KEYS');
    expect(error.message).toMatch(/NODE_ENV=production.*ASSISTANT_ALLOW_ANONYMOUS=true/);
    expect(error.message).not.toContain('\n');
  });

  it('serves without keys in production when asked to, and anywhere else without being asked', () => {
    expect(validateEnvironment({ NODE_ENV: 'production', ASSISTANT_ALLOW_ANONYMOUS: 'true' }).ASSISTANT_ALLOW_ANONYMOUS).toBe(true);
    expect(validateEnvironment({ NODE_ENV: 'production', ASSISTANT_API_KEYS: 'alpha-key' }).ASSISTANT_API_KEYS).toBe('alpha-key');
    expect(validateEnvironment({ NODE_ENV: 'development' }).ASSISTANT_ALLOW_ANONYMOUS).toBe(false);
    expect(validateEnvironment({ NODE_ENV: 'test' }).ASSISTANT_API_KEYS).toBeUndefined();
  });

  it('never echoes the HF token in its message', () => {
    // A token cannot be invalid as a string, so force the failure on a later variable and check nothing leaks.
    const error = rejectionOf({ HF_TOKEN: 'hf_secret_value', PORT: 'x' });
    expect(error.message).not.toContain('hf_secret_value');
  });
});

describe('loadEnvironment and its .env.<NODE_ENV> file', () => {
  // Variables these tests set, through the file or directly; each test starts without them and leaves none behind.
  const TOUCHED = ['NODE_ENV', 'PORT', 'HF_MODEL', 'CIRCUIT_BREAKER_FAIL_THRESHOLD'] as const;
  const saved = new Map<string, string | undefined>();
  const startDir = process.cwd();
  let dir: string;
  let loadEnvFile: jest.Spied<typeof process.loadEnvFile>;

  beforeEach(async () => {
    for (const name of TOUCHED) {
      saved.set(name, process.env[name]);
      delete process.env[name];
    }
    dir = await mkdtemp(join(tmpdir(), 'environment-'));
    process.chdir(dir);
    // Node's own loader writes the real process environment, which jest hides behind a copy per test file (and the
    // variables would leak into later suites): here the file's variables go into the copy, set ones kept, as Node does.
    loadEnvFile = jest.spyOn(process, 'loadEnvFile').mockImplementation((path = '.env') => {
      for (const [name, value] of Object.entries(parseEnv(readFileSync(path, 'utf8')))) process.env[name] ??= value;
    });
  });

  afterEach(async () => {
    loadEnvFile.mockRestore();
    process.chdir(startDir);
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('names the file after NODE_ENV, and .env.development when NODE_ENV is unset', () => {
    expect(envFilePath()).toBe('.env.development');
    process.env['NODE_ENV'] = 'production';
    expect(envFilePath()).toBe('.env.production');
  });

  it('loads the file for NODE_ENV from the working directory before validating', async () => {
    process.env['NODE_ENV'] = 'test';
    await writeFile(join(dir, '.env.test'), 'PORT=8081\nHF_MODEL=org/from-the-file\n');
    await writeFile(join(dir, '.env.development'), 'PORT=1111\n');

    const env = loadEnvironment();

    expect(loadEnvFile.mock.calls).toEqual([['.env.test']]);
    expect(env).toMatchObject({ NODE_ENV: 'test', PORT: 8081, HF_MODEL: 'org/from-the-file' });
  });

  it('validates the environment alone, loading no file, when there is none for NODE_ENV', () => {
    process.env['NODE_ENV'] = 'test';
    process.env['PORT'] = '9090';

    const env = loadEnvironment();

    expect(loadEnvFile).not.toHaveBeenCalled();
    expect(env.PORT).toBe(9090);
    expect(env.HF_MODEL).toBe('meta-llama/Llama-3.1-8B-Instruct');
  });

  it('stops start-up naming a variable the file sets to a bad value', async () => {
    await writeFile(join(dir, '.env.development'), 'CIRCUIT_BREAKER_FAIL_THRESHOLD=0\n');

    expect(() => loadEnvironment()).toThrow(
      new InvalidEnvironmentError('CIRCUIT_BREAKER_FAIL_THRESHOLD', 'must not be less than 1 (got "0")'),
    );
  });
});
