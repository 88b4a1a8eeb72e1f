import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';
import { Histogram, Registry } from 'prom-client';
import { METRICS_REGISTRY } from './metrics.constants.js';

/** The label of a request no route matched: its path would let anyone create series at will. */
export const UNMATCHED_ROUTE = 'unmatched';

/** From a cache hit (a few ms) to a model call that runs into the 30 s time-out. */
const HTTP_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** `http_request_duration_seconds` by route template, timed by Fastify itself in an onResponse hook. */
@Injectable()
export class HttpMetrics implements OnModuleInit {
  private readonly requestDuration: Histogram<'method' | 'route' | 'status_code'>;

  constructor(
    @Inject(METRICS_REGISTRY) registry: Registry,
    private readonly adapterHost: HttpAdapterHost,
  ) {
    this.requestDuration = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request duration by method, route template (unmatched for unknown paths) and status code',
      labelNames: ['method', 'route', 'status_code'],
      buckets: HTTP_BUCKETS_SECONDS,
      registers: [registry],
    });
  }

  /** Runs before listen, while Fastify still accepts hooks. */
  onModuleInit(): void {
    const adapter = this.adapterHost.httpAdapter;
    // An application context has no HTTP server to time.
    if (adapter?.getType() !== 'fastify') return;
    adapter.getInstance<FastifyInstance>().addHook('onResponse', (request, reply, done) => {
      const route = request.routeOptions.url ?? UNMATCHED_ROUTE;
      this.requestDuration.observe({ method: request.method, route, status_code: reply.statusCode }, reply.elapsedTime / 1000);
      done();
    });
  }
}
