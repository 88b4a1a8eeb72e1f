import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from '@jest/globals';
import Fastify, { type FastifyInstance } from 'fastify';
import { capConnections, connectionLimit, MAX_CONNECTIONS, openFileLimit } from './connection-limits.js';

const PROC_LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

describe('the connection limit', () => {
  it('is half the open files the process may have, at least 16, at most 4096, and 4096 where there is no limit to read', () => {
    expect(openFileLimit(PROC_LIMITS)).toBe(1024);
    expect(openFileLimit(PROC_LIMITS.replace('1024   ', 'unlimited'))).toBeUndefined();
    expect(openFileLimit('')).toBeUndefined();
    expect(connectionLimit(1024)).toBe(512);
    expect(connectionLimit(20)).toBe(16);
    expect(connectionLimit(1_048_576)).toBe(MAX_CONNECTIONS);
    expect(connectionLimit(undefined)).toBe(MAX_CONNECTIONS);
    expect(connectionLimit()).toBe(connectionLimit(openFileLimit()));
  });
});

describe('a server with capped connections', () => {
  let app: FastifyInstance;
  const clients: Socket[] = [];
  /** Requests to /held wait for this. */
  let release: () => void = () => undefined;
  let released: Promise<void> = Promise.resolve();

  afterEach(async () => {
    release();
    for (const client of clients.splice(0)) client.destroy();
    await app.close();
  });

  /** 16 connections at most: nearly full (the last eighth) from the 14th. */
  async function serve(): Promise<number> {
    released = new Promise((resolve) => (release = resolve));
    app = Fastify();
    capConnections(app, 16);
    app.get('/', async () => ({ ok: true }));
    app.get('/held', async () => {
      await released;
      return { ok: true };
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    return (app.server.address() as AddressInfo).port;
  }

  interface Exchange {
    client: Socket;
    /** The response's head, lower-cased; empty when the connection closed without one. */
    head: Promise<string>;
    closed: Promise<void>;
  }

  /** A new connection sending one keep-alive request for `path`. */
  function send(port: number, path = '/'): Exchange {
    const client = connect({ port, host: '127.0.0.1' });
    clients.push(client);
    client.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    const head = new Promise<string>((resolve) => {
      client.once('data', (chunk: Buffer) => resolve(chunk.toString('latin1').toLowerCase()));
      void closed.then(() => resolve(''));
    });
    client.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n`);
    return { client, head, closed };
  }

  /** Until the server has accepted `count` connections. */
  async function accepted(count: number): Promise<void> {
    while ((await new Promise<number>((resolve, reject) => app.server.getConnections((e, n) => (e ? reject(e) : resolve(n))))) < count)
      await new Promise((resolve) => setTimeout(resolve, 5));
  }

  it('keeps connections alive while there is room; nearly full, it closes those kept alive with no request since', async () => {
    const port = await serve();
    const idle: Exchange[] = [];
    for (let i = 0; i < 12; i++) {
      const exchange = send(port);
      expect(await exchange.head).toContain('connection: keep-alive');
      idle.push(exchange);
    }
    // Two requests still running make 14 connections: the 12 idle ones are closed, the two running are not.
    const running = [send(port, '/held'), send(port, '/held')];
    await Promise.all(idle.map((exchange) => exchange.closed));
    release();
    for (const exchange of running) expect(await exchange.head).toMatch(/^http\/1\.1 200/);
  });

  it('nearly full, each response closes its own connection; with room again, responses keep them alive', async () => {
    const port = await serve();
    const running = Array.from({ length: 14 }, () => send(port, '/held'));
    await accepted(14);
    release();
    for (const exchange of running) expect(await exchange.head).toMatch(/^http\/1\.1 200[^]*connection: close/);
    await Promise.all(running.map((exchange) => exchange.closed));
    expect(await send(port).head).toContain('connection: keep-alive');
  });

  it('refuses a connection past the cap, and serves the next client once those before it are answered', async () => {
    const port = await serve();
    const running = Array.from({ length: 16 }, () => send(port, '/held'));
    await accepted(16);
    const refused = send(port);
    await refused.closed;
    expect(await refused.head).toBe('');
    release();
    await Promise.all(running.map((exchange) => exchange.closed));
    expect(await send(port).head).toMatch(/^http\/1\.1 200/);
  });
});
