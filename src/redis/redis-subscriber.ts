import { Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { RedisConnection, type RedisClient } from './redis-connection.js';

/** Calls the listener with each message of a channel it subscribed to. */
export type ChannelListener = (message: string) => void;

interface Channel {
  listeners: Set<ChannelListener>;
  subscribed: Promise<void>;
}

/**
 * One subscribed connection for the whole replica (a subscribed connection can do nothing else), shared by every
 * channel and listener: each channel is subscribed once, however many wait on it, and unsubscribed after the last.
 * Opened on first use; node-redis subscribes again by itself after a reconnection.
 */
@Injectable()
export class RedisSubscriber implements OnApplicationShutdown {
  private client?: RedisClient;
  private connecting?: Promise<RedisClient>;
  /** It connected once: from then on node-redis reconnects it by itself. */
  private connected = false;
  private readonly channels = new Map<string, Channel>();

  constructor(private readonly redis: RedisConnection) {}

  /** Channels with at least one listener (bounded by the waits in progress). */
  get size(): number {
    return this.channels.size;
  }

  /**
   * Listens to `channel` until the function it resolves to is called. Resolves once Redis confirmed the subscription,
   * so a message published after that reaches the listener; rejects when it cannot subscribe (no Redis, or down).
   */
  async subscribe(channel: string, listener: ChannelListener): Promise<() => void> {
    // Connected once and now reconnecting: fail at once rather than queue behind the reconnection.
    if (this.connected && !this.client?.isReady) throw new Error('The subscribed connection to Redis is down');
    const client = await this.open();
    let entry = this.channels.get(channel);
    if (!entry) {
      const listeners = new Set<ChannelListener>();
      const created: Channel = {
        listeners,
        subscribed: client.subscribe(channel, (message: string) => {
          for (const each of listeners) each(message);
        }),
      };
      created.subscribed.catch(() => {
        if (this.channels.get(channel) === created) this.channels.delete(channel);
      });
      this.channels.set(channel, created);
      entry = created;
    }
    const joined = entry;
    joined.listeners.add(listener);
    try {
      await joined.subscribed;
    } catch (error) {
      joined.listeners.delete(listener);
      throw error;
    }
    return () => {
      if (!joined.listeners.delete(listener) || joined.listeners.size > 0) return;
      if (this.channels.get(channel) === joined) this.channels.delete(channel);
      void client.unsubscribe(channel).catch(() => undefined);
    };
  }

  /** The subscribed connection, connecting it on first use. */
  open(): Promise<RedisClient> {
    const main = this.redis.client;
    if (!main) return Promise.reject(new Error('Redis is not configured'));
    if (!this.connecting) {
      const client = main.duplicate();
      this.client = client;
      // The main connection reports an outage (once); this one only reconnects, and waits time out meanwhile.
      client.on('error', () => undefined);
      this.connecting = client.connect().then(() => {
        this.connected = true;
        return client;
      });
      this.connecting.catch(() => (this.connecting = undefined));
    }
    return this.connecting;
  }

  async onApplicationShutdown(): Promise<void> {
    const client = this.client;
    this.channels.clear();
    if (client?.isOpen) await client.disconnect().catch(() => undefined);
  }
}
