import { registerAs } from '@nestjs/config';
import { environment } from './environment.js';

export const appConfig = registerAs('app', () => {
  const env = environment();
  return {
    nodeEnv: env.NODE_ENV,
    port: env.PORT,
    host: env.HOST,
    /** Set: GET /metrics is served on this port alone. */
    metricsPort: env.METRICS_PORT,
    /** Swagger UI at /docs and the OpenAPI document at /docs/json. */
    docsEnabled: env.DOCS_ENABLED,
    /** SIGTERM → readiness 503 at once, keep serving this long so load balancers stop sending, then drain. */
    shutdownDrainMs: env.SHUTDOWN_DRAIN_SECONDS * 1000,
  };
});
