import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CircuitBreakerEvent, CircuitBreakerEventType, CircuitState } from '../circuit-breaker/circuit-breaker.js';
import { CircuitBreakerRegistry } from '../circuit-breaker/circuit-breaker.registry.js';
import { METRICS_REGISTRY } from './metrics.constants.js';

const STATE_VALUES: Readonly<Record<CircuitState, number>> = { closed: 0, half_open: 1, open: 2 };

/** Every event but 'neutral', which is an upstream call's outcome, not something the breaker did. */
const COUNTED_EVENTS = [
  'success',
  'failure',
  'timeout',
  'reject',
  'overloaded',
  'open',
  'close',
  'half_open',
] as const satisfies readonly CircuitBreakerEventType[];

/** Up to the longest call a breaker allows (CIRCUIT_BREAKER_TIMEOUT_SECONDS, 30 by default) and beyond. */
const UPSTREAM_BUCKETS_SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60];

/** Breaker state (read at scrape time), breaker events and upstream call durations (observed as they happen). */
@Injectable()
export class CircuitBreakerMetrics implements OnModuleInit, OnApplicationShutdown {
  private readonly events: Counter<'breaker' | 'event'>;
  private readonly upstreamCallDuration: Histogram<'breaker' | 'outcome'>;
  private readonly unsubscribes: (() => void)[] = [];

  constructor(
    @Inject(METRICS_REGISTRY) registry: Registry,
    private readonly breakers: CircuitBreakerRegistry,
  ) {
    new Gauge({
      name: 'assistant_circuit_breaker_state',
      help: 'Circuit breaker state: 0 closed, 1 half-open, 2 open',
      labelNames: ['breaker'],
      registers: [registry],
      collect() {
        this.reset();
        for (const breaker of breakers.getAll()) this.set({ breaker: breaker.name }, STATE_VALUES[breaker.state]);
      },
    });
    new Gauge({
      name: 'assistant_circuit_breaker_scope',
      help: 'Whose circuit a breaker follows: 1 on scope="fleet" while shared by the replicas through Redis, 1 on scope="replica" while its own',
      labelNames: ['breaker', 'scope'],
      registers: [registry],
      collect() {
        this.reset();
        for (const { name, scope } of breakers.getAll()) {
          this.set({ breaker: name, scope: 'fleet' }, scope === 'fleet' ? 1 : 0);
          this.set({ breaker: name, scope: 'replica' }, scope === 'replica' ? 1 : 0);
        }
      },
    });
    this.events = new Counter({
      name: 'assistant_circuit_breaker_events_total',
      help: 'Circuit breaker events: call outcomes (success, failure incl. timeouts, timeout), calls refused while open (reject) or with the bulkhead full (overloaded), and transitions this replica made (open, close, half_open; one another replica of the fleet made is not counted here)',
      labelNames: ['breaker', 'event'],
      registers: [registry],
    });
    this.upstreamCallDuration = new Histogram({
      name: 'assistant_upstream_call_duration_seconds',
      help: 'Duration of calls a breaker let through to the upstream, by outcome (success, failure, timeout, neutral = a request-specific rejection or a call its caller abandoned)',
      labelNames: ['breaker', 'outcome'],
      buckets: UPSTREAM_BUCKETS_SECONDS,
      registers: [registry],
    });
  }

  onModuleInit(): void {
    for (const breaker of this.breakers.getAll()) {
      // Series exist from the start, so rate() sees the first event as an increase.
      for (const event of COUNTED_EVENTS) this.events.inc({ breaker: breaker.name, event }, 0);
      this.unsubscribes.push(breaker.onEvent((event) => this.record(event)));
    }
  }

  onApplicationShutdown(): void {
    for (const unsubscribe of this.unsubscribes.splice(0)) unsubscribe();
  }

  private record({ breaker, type, durationMs }: CircuitBreakerEvent): void {
    if (type !== 'neutral') this.events.inc({ breaker, event: type });
    if (durationMs !== undefined) this.upstreamCallDuration.observe({ breaker, outcome: type }, durationMs / 1000);
  }
}
