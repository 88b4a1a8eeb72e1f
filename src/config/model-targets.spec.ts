// HF_FALLBACK_MODELS parsing (model-targets.ts, environment.ts) against what the client then does with the entry.
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { HfTextGenClient } from '../hf-textgen/hf-textgen.client.js';
import { targetsOf, validateEnvironment } from './environment.js';

const PROMPT = { system: 's', user: 'u' };

afterEach(() => {
  jest.restoreAllMocks();
});

/** Where the client would send a call for the fallback target configured by `entry` (fetch is stubbed: no network). */
async function urlCalledFor(entry: string): Promise<string> {
  const env = validateEnvironment({ HF_TOKEN: 'hf_secret', HF_MODEL: 'org/a', HF_FALLBACK_MODELS: entry });
  const target = targetsOf(env)[1];
  const urls: string[] = [];
  jest.spyOn(globalThis, 'fetch').mockImplementation((input) => {
    urls.push(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    return Promise.resolve(new Response(JSON.stringify({ choices: [{ message: { content: 'ok' } }] }), { status: 200 }));
  });
  const client = new HfTextGenClient({
    token: 'hf_secret',
    model: target.model,
    endpointUrl: target.endpointUrl,
    maxNewTokens: 8,
    temperature: 0,
  });
  await client.generate(PROMPT).catch(() => undefined);
  return urls[0] ?? '(no call)';
}

describe('an accepted `<model>@<base URL>` entry reaches its endpoint', () => {
  it('lower-case scheme (control): the dedicated endpoint is called', async () => {
    expect(await urlCalledFor('org/b@http://10.0.0.5:8080')).toBe('http://10.0.0.5:8080/v1/chat/completions');
  });

  // The @huggingface/inference client only recognises an endpoint that starts with the literal "http://" / "https://":
  // anything else would send the call (and HF_TOKEN) to the HF router, so start-up refuses it, naming the variable.
  it.each(['org/b@HTTPS://tgi.internal:8443', 'org/b@ http://10.0.0.5:8080'])(
    'refuses %s at start-up rather than call the router',
    (entry) => {
      expect(() => validateEnvironment({ HF_TOKEN: 'hf_secret', HF_MODEL: 'org/a', HF_FALLBACK_MODELS: entry })).toThrow(
        /HF_FALLBACK_MODELS: the endpoint of "org\/b" must be an http:\/\/ or https:\/\/ URL/,
      );
    },
  );
});

describe('a refused entry with credentials in its URL', () => {
  // entryProblem refuses user:password in an endpoint, but the start-up line quotes the raw value with
  // withoutPassword(), whose pattern only matches a value that STARTS with a scheme: `org/b@https://…` does not.
  it('the start-up error line does not show the password', () => {
    let message = '';
    try {
      validateEnvironment({ HF_FALLBACK_MODELS: 'org/b@https://svc:s3cr3t-pass@tgi.internal' });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('HF_FALLBACK_MODELS');
    expect(message).not.toContain('s3cr3t-pass');
  });
});

describe('entries that hold (expected to pass)', () => {
  it('accepts provider suffixes, trailing commas, blanks around entries, and a base URL with a path', () => {
    const env = validateEnvironment({
      HF_MODEL: 'org/a',
      HF_FALLBACK_MODELS: ' Qwen/Qwen2.5-7B-Instruct:novita , meta-llama/Llama-3.1-8B-Instruct:fastest,org/c@https://h.example/prefix/v1 ,',
    });
    expect(targetsOf(env).map(({ model, breakerName, endpointUrl }) => [model, breakerName, endpointUrl])).toEqual([
      ['org/a', 'huggingface', undefined],
      ['Qwen/Qwen2.5-7B-Instruct:novita', 'huggingface:Qwen/Qwen2.5-7B-Instruct:novita', undefined],
      ['meta-llama/Llama-3.1-8B-Instruct:fastest', 'huggingface:meta-llama/Llama-3.1-8B-Instruct:fastest', undefined],
      ['org/c', 'huggingface:org/c', 'https://h.example/prefix/v1'],
    ]);
  });

  it('refuses credentials in the URL, a non-http scheme and two entries with one breaker', () => {
    for (const value of ['org/b@http://u:p@h', 'org/b@ftp://h', 'org/b,org/b@http://h', 'org/b@', '@http://h', 'org/b c']) {
      expect(() => validateEnvironment({ HF_FALLBACK_MODELS: value })).toThrow(/HF_FALLBACK_MODELS/);
    }
  });

  it('warns that HF_TOKEN goes over plain http to a dedicated endpoint that is not loopback', () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    new HfTextGenClient({ token: 'hf_x', model: 'org/b', endpointUrl: 'http://10.0.0.5:8080', maxNewTokens: 8, temperature: 0 }).announce();
    expect(warn.mock.calls.map(([message]) => String(message))).toEqual([expect.stringContaining('plain http')]);
  });
});
