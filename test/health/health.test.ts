import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/sim/index.js';
import { backends, hasRealServices, testDatabaseUrl } from '../helpers/environment.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';

describe.each(backends)('health on the %s backend', (backend) => {
  let simulator: Simulator;
  let testApp: TestApp;

  beforeAll(async () => {
    simulator = await startSimulator();
    testApp = await createTestApp({ backend, environment: { VLLM_BASE_URL: simulator.url } });
  });

  afterAll(async () => {
    await testApp.close();
    await simulator.close();
  });

  it('reports every dependency up', async () => {
    const response = await testApp.app.inject({ method: 'GET', url: '/health' });
    expect(response.statusCode).toBe(200);
    const report = response.json();
    expect(report).toMatchObject({
      status: 'ok',
      version: expect.stringMatching(/^\d+\.\d+\.\d+/),
      services: {
        postgres: { status: 'up', kind: backend === 'real' ? 'postgresql' : 'pglite' },
        redis: { status: 'up', kind: backend === 'real' ? 'redis' : 'memory' },
        vllm: { status: 'up', healthy_upstreams: 1, total_upstreams: 1 },
      },
    });
    expect(new Date(report.timestamp).getTime()).toBeGreaterThan(Date.now() - 60_000);
    for (const service of Object.values<{ latency_ms: number }>(report.services)) expect(service.latency_ms).toBeGreaterThanOrEqual(0);
  });

  it('is degraded, not down, when vLLM reports its engine dead', async () => {
    simulator.setHealthy(false);
    try {
      const response = await testApp.app.inject({ method: 'GET', url: '/health' });
      expect(response.statusCode).toBe(200);
      expect(response.json()).toMatchObject({ status: 'degraded', services: { vllm: { status: 'down', healthy_upstreams: 0 } } });
    } finally {
      simulator.setHealthy(true);
    }
  });

  it('answers the probes', async () => {
    expect((await testApp.app.inject({ method: 'GET', url: '/health/live' })).json()).toEqual({ status: 'ok' });
    const ready = await testApp.app.inject({ method: 'GET', url: '/health/ready' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: 'ready' });
  });
});

describe('health with dependencies down', () => {
  it('is degraded when no vLLM server answers at all', async () => {
    const simulator = await startSimulator();
    const testApp = await createTestApp({ backend: 'embedded', environment: { VLLM_BASE_URL: simulator.url } });
    await simulator.close();
    try {
      const response = await testApp.app.inject({ method: 'GET', url: '/health' });
      expect(response.statusCode).toBe(200);
      expect(response.json()).toMatchObject({ status: 'degraded', services: { vllm: { status: 'down' }, postgres: { status: 'up' } } });
    } finally {
      await testApp.close();
    }
  });

  it('answers 503 when the store (Redis) is unreachable', async () => {
    const testApp = await createTestApp({ backend: 'embedded', environment: { REDIS_URL: 'redis://127.0.0.1:1' } });
    try {
      const response = await testApp.app.inject({ method: 'GET', url: '/health' });
      expect(response.statusCode).toBe(503);
      expect(response.json()).toMatchObject({ status: 'unhealthy', services: { redis: { status: 'down', kind: 'redis' }, postgres: { status: 'up' } } });
      const ready = await testApp.app.inject({ method: 'GET', url: '/health/ready' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json()).toEqual({ status: 'not_ready', reason: 'redis unreachable' });
      expect((await testApp.app.inject({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);
    } finally {
      await testApp.close();
    }
  });

  it.skipIf(!hasRealServices)('answers 503 when PostgreSQL is unreachable', async () => {
    const unreachable = new URL(testDatabaseUrl ?? 'postgres://postgres@127.0.0.1/test');
    unreachable.port = '1';
    const testApp = await createTestApp({ backend: 'real', environment: { DATABASE_URL: unreachable.toString(), AUTO_MIGRATE: 'false', VLLM_HEALTH_TIMEOUT_MS: '1500' } });
    try {
      const response = await testApp.app.inject({ method: 'GET', url: '/health' });
      expect(response.statusCode).toBe(503);
      expect(response.json()).toMatchObject({ status: 'unhealthy', services: { postgres: { status: 'down', kind: 'postgresql' }, redis: { status: 'up' } } });
      const ready = await testApp.app.inject({ method: 'GET', url: '/health/ready' });
      expect(ready.json()).toEqual({ status: 'not_ready', reason: 'postgres unreachable' });
    } finally {
      await testApp.app.close();
    }
  });
});
