import { FALLBACK_REASONS, type FallbackReason } from '../assistant/assistant.errors.js';
import { redisScript } from '../redis/redis-script.js';

/**
 * How the lease holder's call went, published on the question's channel: answered (the answer is in the cache),
 * failed (its waiters take the fallbacks at once, with its reason), or abandoned (nobody waited for it any more, so
 * its waiters ask themselves).
 */
export type FleetOutcome =
  { kind: 'answered' } | { kind: 'failed'; reason: FallbackReason; retryAfterSeconds: number } | { kind: 'abandoned' };

/** KEYS[1] the lease; ARGV[1] `{token, ttlMs}`. Reply `{acquired: true}` or `{acquired: false, ttlMs}` (what is left of it). */
export const ACQUIRE_LEASE = redisScript(
  'coalesce-acquire',
  `local args = cjson.decode(ARGV[1])
if redis.call('SET', KEYS[1], args.token, 'NX', 'PX', args.ttlMs) then
  return cjson.encode({acquired = true})
end
return cjson.encode({acquired = false, ttlMs = redis.call('PTTL', KEYS[1])})`,
);

/**
 * KEYS[1] the lease, KEYS[2] its channel; ARGV[1] `{token, outcome}`. Deletes the lease only while the token still
 * owns it (it may have expired and been taken by another replica), and publishes the outcome: an answer always (it is
 * in the cache whoever holds the lease now), a failure or abandonment only by the owner (a new holder's waiters wait on).
 */
export const RELEASE_LEASE = redisScript(
  'coalesce-release',
  `local args = cjson.decode(ARGV[1])
local owned = redis.call('GET', KEYS[1]) == args.token
if owned then redis.call('DEL', KEYS[1]) end
if owned or args.outcome.kind == 'answered' then redis.call('PUBLISH', KEYS[2], cjson.encode(args.outcome)) end
return cjson.encode({released = owned})`,
);

export type Acquired = { acquired: true } | { acquired: false; ttlMs: number };

export function encodeRelease(token: string, outcome: FleetOutcome): string {
  return JSON.stringify({ token, outcome });
}

/** The acquire script's reply; undefined when it is not one (then the replica coalesces on its own). */
export function decodeAcquired(reply: unknown): Acquired | undefined {
  const value = parse(reply);
  if (value?.['acquired'] === true) return { acquired: true };
  const ttlMs = value?.['ttlMs'];
  // PTTL is -2 when the lease expired between SET and PTTL, -1 never (every lease has an expiry): no wait then.
  return value?.['acquired'] === false && typeof ttlMs === 'number' ? { acquired: false, ttlMs: Math.max(0, ttlMs) } : undefined;
}

/** A message of a question's channel; undefined when it is none (a wait goes on until its time-out). */
export function decodeFleetOutcome(message: string): FleetOutcome | undefined {
  const value = parse(message);
  const kind = value?.['kind'];
  if (kind === 'answered' || kind === 'abandoned') return { kind };
  const { reason, retryAfterSeconds } = value ?? {};
  const known = FALLBACK_REASONS.find((each) => each === reason);
  if (kind === 'failed' && known !== undefined && typeof retryAfterSeconds === 'number') return { kind, reason: known, retryAfterSeconds };
  return undefined;
}

function parse(text: unknown): Record<string, unknown> | undefined {
  if (typeof text !== 'string') return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
