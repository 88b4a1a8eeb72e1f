/** The app's own prom-client Registry: one per app, so several apps in one process never share a metric. */
export const METRICS_REGISTRY = 'METRICS:REGISTRY';
