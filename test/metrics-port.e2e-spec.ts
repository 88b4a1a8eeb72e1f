// METRICS_PORT: /metrics on a listener of its own, and gone from the API port.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { freePort } from './support/redis-server.js';
import { startTestApp, type TestApp } from './support/test-app.js';

let testApp: TestApp | undefined;
let metricsPort: number;

beforeAll(async () => {
  metricsPort = await freePort();
  testApp = await startTestApp({ METRICS_PORT: String(metricsPort) });
});

afterAll(async () => {
  await testApp?.close();
  delete process.env['METRICS_PORT'];
});

describe('with METRICS_PORT set', () => {
  it('serves GET /metrics on that port, in Prometheus text format, without a key', async () => {
    const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await response.text()).toContain('assistant_circuit_breaker_state{breaker="huggingface"} 0');
  });

  it('sends the security headers there too, on the metrics and on a 404', async () => {
    for (const path of ['/metrics', '/health/live']) {
      const response = await fetch(`http://127.0.0.1:${metricsPort}${path}`);
      await response.arrayBuffer();
      expect({ path, nosniff: response.headers.get('x-content-type-options') }).toEqual({ path, nosniff: 'nosniff' });
      expect(response.headers.get('content-security-policy')).toContain("default-src 'self'");
    }
  });

  it('serves nothing else there', async () => {
    expect((await fetch(`http://127.0.0.1:${metricsPort}/health/live`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { method: 'POST' })).status).toBe(404);
  });

  it('answers 404 for /metrics on the API port, which still serves everything else', async () => {
    const url = testApp?.url ?? '';
    expect((await fetch(`${url}/metrics`)).status).toBe(404);
    expect((await fetch(`${url}/health/live`)).status).toBe(200);
  });

  it('closes the metrics listener with the app', async () => {
    await testApp?.close();
    testApp = undefined;
    await expect(fetch(`http://127.0.0.1:${metricsPort}/metrics`)).rejects.toThrow();
  });
});
