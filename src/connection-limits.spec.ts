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

  /** Whether the server has closed `exchange`'s connection, once what it sent has been read. */
  async function closedByServer(exchange: Exchange): Promise<boolean> {
    await new Promise((resolve) => setTimeout(resolve, 50));
    return exchange.client.readableEnded || exchange.client.destroyed;
  }

  it('nearly full, a new connection closes the one kept alive the longest with no request since, and no more', async () => {
    const port = await serve();
    const idle: Exchange[] = [];
    for (let i = 0; i < 12; i++) {
      const exchange = send(port);
      expect(await exchange.head).toContain('connection: keep-alive');
      idle.push(exchange);
    }
    // Two requests still running make 14 connections, the mark: one has to go, the longest idle.
    const running = [send(port, '/held'), send(port, '/held')];
    await idle[0].closed;
    expect(await Promise.all(idle.slice(1).map(closedByServer))).toEqual(Array.from({ length: 11 }, () => false));
    release();
    for (const exchange of running) expect(await exchange.head).toMatch(/^http\/1\.1 200/);
  });

  it('nearly full, a connection that has sent nothing for over a second goes before any kept alive', async () => {
    const port = await serve();
    const silent = connect({ port, host: '127.0.0.1' });
    clients.push(silent);
    silent.on('error', () => undefined);
    const silentClosed = new Promise<void>((resolve) => silent.once('close', () => resolve()));
    const idle: Exchange[] = [];
    for (let i = 0; i < 12; i++) {
      const exchange = send(port);
      await exchange.head;
      idle.push(exchange);
    }
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const running = send(port, '/held');
    await silentClosed;
    expect(await Promise.all(idle.map(closedByServer))).toEqual(Array.from({ length: 12 }, () => false));
    release();
    expect(await running.head).toMatch(/^http\/1\.1 200/);
  });

  it('a connection with a pipelined request still being answered is not idle: the mark closes none of it', async () => {
    const port = await serve();
    const pipelined = connect({ port, host: '127.0.0.1' });
    clients.push(pipelined);
    let received = '';
    pipelined.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    const closedEarly = new Promise<string>((resolve) => pipelined.once('close', () => resolve('closed')));
    pipelined.write('GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /held HTTP/1.1\r\nHost: x\r\n\r\n');
    while (!received.includes('{"ok":true}')) await new Promise((resolve) => setTimeout(resolve, 5));
    // 13 more running requests make 14 connections, the mark: nothing here is idle, so nothing is closed.
    const running = Array.from({ length: 13 }, () => send(port, '/held'));
    await accepted(14);
    const soon = new Promise<string>((resolve) => setTimeout(() => resolve('open'), 100));
    expect(await Promise.race([closedEarly, soon])).toBe('open');
    release();
    for (const exchange of running) expect(await exchange.head).toMatch(/^http\/1\.1 200/);
    while ((received.match(/\{"ok":true\}/g) ?? []).length < 2) await new Promise((resolve) => setTimeout(resolve, 5));
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
