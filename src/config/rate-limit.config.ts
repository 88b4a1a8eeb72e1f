import { registerAs } from '@nestjs/config';
import { environment, parseTrustProxy, type TrustProxy } from './environment.js';

export const rateLimitConfig = registerAs('rateLimit', () => ({
  /** Answer requests a minute per API key, or per client address without keys; 0 = no limit. */
  perMinute: environment().RATE_LIMIT_PER_MINUTE,
  /** Model calls in flight per caller (per replica); 0 = no limit. */
  concurrent: environment().RATE_LIMIT_CONCURRENT,
}));

/** Fastify's `trustProxy`, read before the Nest app (and its config) exists: the adapter is built first. */
export function trustProxySetting(): TrustProxy {
  return parseTrustProxy(environment().TRUST_PROXY) ?? false;
}
