import { Inject, Injectable } from '@nestjs/common';
import { Counter, Registry } from 'prom-client';
import { AnswerCache } from '../cache/answer-cache.js';
import { METRICS_REGISTRY } from './metrics.constants.js';

/** `assistant_cache_requests_total`, read from AnswerCache's own counts at scrape time. */
@Injectable()
export class CacheMetrics {
  constructor(@Inject(METRICS_REGISTRY) registry: Registry, cache: AnswerCache) {
    new Counter({
      name: 'assistant_cache_requests_total',
      help: 'Answer-cache lookups by store (memory, redis) and result (fresh_hit, stale_hit, miss, error = the store failed or took over 250 ms, writes included)',
      labelNames: ['store', 'result'],
      registers: [registry],
      collect() {
        const { store, freshHits, staleHits, misses, errors } = cache.stats();
        this.reset();
        this.inc({ store, result: 'fresh_hit' }, freshHits);
        this.inc({ store, result: 'stale_hit' }, staleHits);
        this.inc({ store, result: 'miss' }, misses);
        this.inc({ store, result: 'error' }, errors);
      },
    });
  }
}
