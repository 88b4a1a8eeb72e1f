import { DEFAULT_IPV6_SUBNET_PREFIX, normalizeIp } from '@nestjs/throttler';
import type { FastifyRequest } from 'fastify';

/**
 * Who a caller is without a key: its address as Fastify gives it (TRUST_PROXY decides whether X-Forwarded-For does),
 * an IPv6 address by its /64 (@nestjs/throttler's rule: one host holds a whole /64 and could rotate through it).
 */
export function clientAddress(request: FastifyRequest): string {
  return normalizeIp(request.ip, DEFAULT_IPV6_SUBNET_PREFIX);
}
