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
/** Nearly full, at most this many connections are closed for each new one (nginx drains 32 at a time too). */
const SHED_AT_ONCE = 32;
/** A client that connected this long ago and has sent no request is not about to: nearly full, it is closed first. */
const SILENT_GRACE_MS = 1_000;

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
 * eighth), each new connection makes room for itself, as nginx drains its reusable connections when they run short:
 * first those that connected over a second ago and sent nothing, then those kept alive after a response with no
 * request since, the longest idle first, only as many as it takes to be under the mark again; and each response
 * closes its own connection (`Connection: close`). Closing an idle keep-alive connection races a request its client
 * may be sending on it, so no more are closed than needed. A new connection whose request has not arrived yet is
 * not idle (Node's closeIdleConnections would close it).
 */
export function capConnections(fastify: FastifyInstance, limit = connectionLimit()): void {
  const server = fastify.server;
  server.maxConnections = limit;
  const nearlyFull = limit - Math.max(1, Math.floor(limit / 8));
  let open = 0;
  /** Accepted, no request yet: when each connected. */
  const silent = new Map<Socket, number>();
  /** Answered and kept alive, no request since: the longest idle first (a Set iterates in insertion order). */
  const keptAlive = new Set<Socket>();
  const makeRoom = (): void => {
    let excess = Math.min(SHED_AT_ONCE, open - nearlyFull + 1);
    const connectedBefore = performance.now() - SILENT_GRACE_MS;
    for (const [socket, connectedAt] of silent) {
      if (excess <= 0 || connectedAt > connectedBefore) break;
      socket.destroy();
      silent.delete(socket);
      excess--;
    }
    for (const socket of keptAlive) {
      if (excess <= 0) break;
      socket.destroy();
      keptAlive.delete(socket);
      excess--;
    }
  };
  server.on('connection', (socket: Socket) => {
    open++;
    silent.set(socket, performance.now());
    socket.once('close', () => {
      open--;
      silent.delete(socket);
      keptAlive.delete(socket);
    });
    if (open >= nearlyFull) makeRoom();
  });
  server.on('drop', makeRoom);
  /** Requests a socket has in hand (more than one when pipelined): idle only once every one is answered. */
  const inHand = new WeakMap<Socket, number>();
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    silent.delete(socket);
    keptAlive.delete(socket);
    inHand.set(socket, (inHand.get(socket) ?? 0) + 1);
    response.once('close', () => {
      const left = (inHand.get(socket) ?? 1) - 1;
      inHand.set(socket, left);
      if (left === 0 && !socket.destroyed && !response.hasHeader('connection')) keptAlive.add(socket);
    });
  });
  fastify.addHook('onSend', async (_request, reply) => {
    if (open >= nearlyFull) void reply.header('connection', 'close');
  });
}
