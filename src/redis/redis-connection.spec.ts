import { setImmediate as nextTurn } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { freePort } from '../../test/support/redis-server.js';
import type { cacheConfig } from '../config/cache.config.js';
import { RedisConnection } from './redis-connection.js';

// The connection on its own, with nobody listening on its port; a real redis-server is in test/redis-cache.redis.e2e-spec.ts.

const TTLS = { freshTtlMs: 60_000, staleTtlMs: 3_600_000, coalesceWaitMs: 10_000 };

function config(redisUrl: string | undefined): ConfigType<typeof cacheConfig> {
  return { redisUrl, ...TTLS };
}

/** Lets real I/O (a refused connection) happen between fake timers, until `done` or a bounded number of turns. */
async function untilIo(done: () => boolean): Promise<void> {
  for (let turn = 0; turn < 1000 && !done(); turn++) await nextTurn();
}

describe('RedisConnection', () => {
  let warn: jest.Spied<Logger['warn']>;

  beforeEach(() => {
    warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
  });

  afterEach(() => {
    jest.useRealTimers();
    jest.restoreAllMocks();
  });

  it('has no client without REDIS_URL, reports not ready, and starts and stops without connecting', async () => {
    const connection = new RedisConnection(config(undefined));

    expect(connection.client).toBeUndefined();
    expect(connection.isReady).toBe(false);
    await expect(connection.onModuleInit()).resolves.toBeUndefined();
    await expect(connection.onApplicationShutdown()).resolves.toBeUndefined();
    expect(warn).not.toHaveBeenCalled();
  });

  describe('with Redis unreachable', () => {
    let connection: RedisConnection;

    beforeEach(async () => {
      const port = await freePort();
      jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
      connection = new RedisConnection(config(`redis://127.0.0.1:${port}`));
    });

    afterEach(async () => {
      if (connection.client?.isOpen) await connection.client.disconnect();
    });

    it('starts after the grace period without the cache, logging the outage once however many reconnects fail', async () => {
      let failedAttempts = 0;
      connection.client?.on('error', () => failedAttempts++);
      const starting = connection.onModuleInit();
      await untilIo(() => warn.mock.calls.length > 0);
      // Reconnect attempts back off 50, 100, 200, 400 ms… within the 2 s grace period.
      for (let i = 0; i < 8; i++) {
        await jest.advanceTimersByTimeAsync(250);
        await untilIo(() => false);
      }
      await starting;

      expect(connection.isReady).toBe(false);
      expect(failedAttempts).toBeGreaterThan(3);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(warn.mock.calls[0]?.[0]).toMatch(
        /^Redis unavailable \(.*ECONNREFUSED.*\): answers are served without the cache until it returns$/,
      );
    });

    it('shuts down at once while reconnecting, dropping the socket instead of waiting for QUIT', async () => {
      const starting = connection.onModuleInit();
      await untilIo(() => warn.mock.calls.length > 0);
      await jest.advanceTimersByTimeAsync(2000);
      await starting;
      expect(connection.client?.isOpen).toBe(true);

      // No timer is advanced: a shutdown that waited for QUIT (or its 1 s time-out) would never finish here.
      await connection.onApplicationShutdown();

      expect(connection.client?.isOpen).toBe(false);
      expect(connection.isReady).toBe(false);
    });
  });
});
