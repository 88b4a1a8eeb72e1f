import { Controller, Get, Inject, NotFoundException, Res } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import type { FastifyReply } from 'fastify';
import { Registry } from 'prom-client';
import { appConfig } from '../config/app.config.js';
import { METRICS_REGISTRY } from './metrics.constants.js';
import { PublicRoute } from '../access/public-route.decorator.js';

@PublicRoute()
@Controller('metrics')
export class MetricsController {
  constructor(
    @Inject(METRICS_REGISTRY) private readonly registry: Registry,
    @Inject(appConfig.KEY) private readonly config: ConfigType<typeof appConfig>,
  ) {}

  /** The Prometheus text exposition of every metric of this app; a 404 here when METRICS_PORT serves it instead. */
  @Get()
  scrape(@Res({ passthrough: true }) reply: FastifyReply): Promise<string> {
    if (this.config.metricsPort !== undefined) throw new NotFoundException(`GET /metrics is served on port ${this.config.metricsPort}`);
    void reply.header('Content-Type', this.registry.contentType);
    return this.registry.metrics();
  }
}
