import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { createClient } from 'redis';
import { cacheConfig } from '../config/cache.config.js';

export type RedisClient = ReturnType<typeof createClient>;

/** How long start-up waits for a first connection before serving without the cache. */
const FIRST_CONNECT_GRACE_MS = 2000;
const QUIT_TIMEOUT_MS = 1000;
/** A Redis can stop answering with its connection still open (paused, swapping, a stuck proxy): PING notices. */
const PING_INTERVAL_MS = 1000;
const PING_DEADLINE_MS = 1000;
/** Commands waiting for a Redis that does not answer, at most; past it they fail at once (a cache miss). */
const MAX_QUEUED_COMMANDS = 1000;

/**
 * The node-redis client behind the answer cache, when REDIS_URL is set. It never crashes the process:
 * errors are logged once per outage, commands fail fast while disconnected, and it reconnects by itself.
 */
@Injectable()
export class RedisConnection implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(RedisConnection.name);
  readonly client?: RedisClient;
  private inOutage = false;
  private answering = true;
  private probing = false;
  private pinger?: NodeJS.Timeout;

  constructor(@Inject(cacheConfig.KEY) config: ConfigType<typeof cacheConfig>) {
    if (!config.redisUrl) return;
    this.client = createClient({
      url: config.redisUrl,
      // Queued commands would hold requests until Redis returns; failing them is a cache miss instead.
      disableOfflineQueue: true,
      commandsQueueMaxLength: MAX_QUEUED_COMMANDS,
      socket: { connectTimeout: 2000, reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 2000) },
    });
    this.client.on('error', (error: Error) => this.onError(error));
    this.client.on('ready', () => this.onReady());
  }

  /** Connected and answering: only then is the cache worth asking. */
  get isReady(): boolean {
    return (this.client?.isReady ?? false) && this.answering;
  }

  /** Why the cache is not in use, for the health entry; undefined while it is. */
  get problem(): string | undefined {
    if (!this.client || this.isReady) return undefined;
    return this.client.isReady ? `Redis does not answer PING within ${PING_DEADLINE_MS} ms` : 'Redis is not connected';
  }

  async onModuleInit(): Promise<void> {
    if (!this.client) return;
    this.pinger = setInterval(() => void this.probe(), PING_INTERVAL_MS).unref();
    const connecting = this.client.connect().catch((error: Error) => this.onError(error));
    await Promise.race([connecting, new Promise((resolve) => setTimeout(resolve, FIRST_CONNECT_GRACE_MS).unref())]);
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.pinger);
    const client = this.client;
    if (!client?.isOpen) return;
    // QUIT on a client that is reconnecting is queued and never answered: just drop the socket then.
    const quit = client.isReady ? client.quit() : Promise.reject(new Error('not connected'));
    const gaveUp = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('QUIT timed out')), QUIT_TIMEOUT_MS).unref());
    await Promise.race([quit, gaveUp]).catch(() => client.disconnect().catch(() => undefined));
  }

  /** One PING at a time: a Redis that does not answer within the deadline is treated as down until it does. */
  private async probe(): Promise<void> {
    const client = this.client;
    if (!client?.isReady || this.probing) return;
    this.probing = true;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), PING_DEADLINE_MS)));
    const answered = await Promise.race([
      client.ping().then(
        () => true,
        () => false,
      ),
      deadline,
    ]);
    clearTimeout(timer);
    this.probing = false;
    if (answered === this.answering) return;
    this.answering = answered;
    if (answered) this.logger.log('Redis answers again: the answer cache is in use again');
    else this.logger.warn(`Redis does not answer (no PONG within ${PING_DEADLINE_MS} ms): answers are served without the cache`);
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
