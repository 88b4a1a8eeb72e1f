import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';

/**
 * How many client connections one replica holds at once. Every socket is a file descriptor, and the model's calls,
 * Redis and the knowledge files need theirs: without a cap, idle keep-alive sockets alone (an attacker's, or a
 * proxy's surplus) can take every descriptor, and the model's calls fail with EMFILE though the model is well. So at
 * most half the descriptors the process may open go to clients, and never more than MAX_CONNECTIONS (each socket
 * also costs memory: a few KB idle, far more with a request in flight, under the Deployment's 512 MiB).
 */
export const MAX_CONNECTIONS = 4096;
/** A process allowed very few descriptors still serves a few clients. */
const MIN_CONNECTIONS = 16;

/**
 * Longer than the idle time-out of the load balancers in front (60 s for AWS ALB, GCP and ingress-nginx), so the
 * balancer, not the replica, closes an idle connection: closed by the replica, a request the balancer sends at that
 * moment would meet a reset. Fastify's own default is 72 s; this frees an idle socket's descriptor 7 s sooner.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/** A keep-alive connection is closed after this many requests, so long-lived ones spread again over the replicas. */
export const MAX_REQUESTS_PER_SOCKET = 1000;
/** Idle keep-alive connections are closed at most this often while the replica is nearly full. */
const SHED_IDLE_EVERY_MS = 100;

export function connectionLimit(openFiles: number | undefined = openFileLimit()): number {
  if (openFiles === undefined) return MAX_CONNECTIONS;
  return Math.max(MIN_CONNECTIONS, Math.min(MAX_CONNECTIONS, Math.floor(openFiles / 2)));
}

/** The soft limit on open files (`ulimit -n`) from /proc/self/limits; undefined where there is none to read (not Linux) or no limit. */
export function openFileLimit(limits = readProcLimits()): number | undefined {
  const soft = /^Max open files\s+(\d+)/m.exec(limits ?? '')?.[1];
  return soft === undefined ? undefined : Number(soft);
}

function readProcLimits(): string | undefined {
  try {
    return readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Caps the server's connections at `limit` (past it Node closes a new connection at once). Nearly full (the last
 * eighth), the replica keeps no connection idle, as nginx frees its reusable ones when connections run short: it
 * closes those kept alive after a response with no request since, and each response closes its own
 * (`Connection: close`). Idle sockets cannot hold the replica full; a client that kept one connects again. A new
 * connection whose request has not arrived yet is not idle (Node's closeIdleConnections would close it).
 */
export function capConnections(fastify: FastifyInstance, limit = connectionLimit()): void {
  const server = fastify.server;
  server.maxConnections = limit;
  const nearlyFull = limit - Math.max(1, Math.floor(limit / 8));
  let open = 0;
  const keptAlive = new Set<Socket>();
  let shedAt = Number.NEGATIVE_INFINITY;
  const shedIdle = (): void => {
    const now = performance.now();
    if (now - shedAt < SHED_IDLE_EVERY_MS) return;
    shedAt = now;
    for (const socket of keptAlive) socket.destroy();
    keptAlive.clear();
  };
  server.on('connection', (socket: Socket) => {
    open++;
    socket.once('close', () => {
      open--;
      keptAlive.delete(socket);
    });
    if (open >= nearlyFull) shedIdle();
  });
  server.on('drop', shedIdle);
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    keptAlive.delete(socket);
    response.once('finish', () => {
      if (!socket.destroyed && !response.hasHeader('connection')) keptAlive.add(socket);
    });
  });
  fastify.addHook('onSend', async (_request, reply) => {
    if (open >= nearlyFull) void reply.header('connection', 'close');
  });
}
