import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { createClient } from 'redis';
import { cacheConfig } from '../config/cache.config.js';

export type RedisClient = ReturnType<typeof createClient>;

/** How long start-up waits for a first connection before serving without the cache. */
const FIRST_CONNECT_GRACE_MS = 2000;
const QUIT_TIMEOUT_MS = 1000;

/**
 * The node-redis client behind the answer cache, when REDIS_URL is set. It never crashes the process:
 * errors are logged once per outage, commands fail fast while disconnected, and it reconnects by itself.
 */
@Injectable()
export class RedisConnection implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(RedisConnection.name);
  readonly client?: RedisClient;
  private inOutage = false;

  constructor(@Inject(cacheConfig.KEY) config: ConfigType<typeof cacheConfig>) {
    if (!config.redisUrl) return;
    this.client = createClient({
      url: config.redisUrl,
      // Queued commands would hold requests until Redis returns; failing them is a cache miss instead.
      disableOfflineQueue: true,
      socket: { connectTimeout: 2000, reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 2000) },
    });
    this.client.on('error', (error: Error) => this.onError(error));
    this.client.on('ready', () => this.onReady());
  }

  get isReady(): boolean {
    return this.client?.isReady ?? false;
  }

  async onModuleInit(): Promise<void> {
    if (!this.client) return;
    const connecting = this.client.connect().catch((error: Error) => this.onError(error));
    await Promise.race([connecting, new Promise((resolve) => setTimeout(resolve, FIRST_CONNECT_GRACE_MS).unref())]);
  }

  async onApplicationShutdown(): Promise<void> {
    const client = this.client;
    if (!client?.isOpen) return;
    // QUIT on a client that is reconnecting is queued and never answered: just drop the socket then.
    const quit = client.isReady ? client.quit() : Promise.reject(new Error('not connected'));
    const gaveUp = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('QUIT timed out')), QUIT_TIMEOUT_MS).unref());
    await Promise.race([quit, gaveUp]).catch(() => client.disconnect().catch(() => undefined));
  }

  private onError(error: Error): void {
    if (this.inOutage) return;
    this.inOutage = true;
    this.logger.warn(`Redis unavailable (${error.message}): answers are served without the cache until it returns`);
  }

  private onReady(): void {
    if (this.inOutage) this.logger.log('Redis is back: the answer cache is in use again');
    this.inOutage = false;
  }
}
