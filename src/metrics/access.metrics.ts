import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Counter, Registry } from 'prom-client';
import { ApiKeyChecks, type KeyCheckListener, type KeyRejection } from '../access/api-key-checks.js';
import { METRICS_REGISTRY } from './metrics.constants.js';

/** `assistant_api_key_rejections_total` by reason: it listens to the key checks, which know nothing of metrics. */
@Injectable()
export class AccessMetrics implements KeyCheckListener, OnModuleInit, OnApplicationShutdown {
  private readonly rejections: Counter<'reason'>;
  private stopObserving?: () => void;

  constructor(
    @Inject(METRICS_REGISTRY) registry: Registry,
    private readonly checks: ApiKeyChecks,
  ) {
    this.rejections = new Counter({
      name: 'assistant_api_key_rejections_total',
      help: 'Requests refused by the API key check, by reason: missing (no key, 401), invalid (a wrong key, 401), over_budget (the client address spent its budget of failed checks, 429)',
      labelNames: ['reason'],
      registers: [registry],
    });
  }

  onModuleInit(): void {
    this.stopObserving = this.checks.observe(this);
  }

  onApplicationShutdown(): void {
    this.stopObserving?.();
  }

  rejected(reason: KeyRejection): void {
    this.rejections.inc({ reason });
  }
}
