import { createHash } from 'node:crypto';
import type { RedisClient } from './redis-connection.js';

/** A Lua script run by its SHA1, with its source to load it again. */
export interface RedisScript {
  readonly name: string;
  readonly source: string;
  readonly sha: string;
}

export function redisScript(name: string, source: string): RedisScript {
  return { name, source, sha: createHash('sha1').update(source).digest('hex') };
}

/** EVALSHA, then EVAL after NOSCRIPT: a Redis that restarted (or never saw the script) loads it again. */
export function runScript(client: RedisClient, script: RedisScript, options: { keys: string[]; arguments: string[] }): Promise<unknown> {
  return client.evalSha(script.sha, options).catch((error: Error) => {
    if (!error.message.startsWith('NOSCRIPT')) throw error;
    return client.eval(script.source, options);
  });
}
