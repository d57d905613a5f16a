import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/test-app.js';

describe('request ids', () => {
  let testApp: TestApp;
  beforeAll(async () => {
    testApp = await createTestApp({ backend: 'embedded', captureLogs: true });
  });
  afterAll(async () => {
    await testApp.close();
  });

  it('keeps a well-formed incoming X-Request-Id and logs every line of the request with it', async () => {
    const response = await testApp.app.inject({ method: 'GET', url: '/health/live', headers: { 'x-request-id': 'client-abc.123:4' } });
    expect(response.headers['x-request-id']).toBe('client-abc.123:4');
    const lines = testApp.logs.filter((line) => line.includes('client-abc.123:4'));
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(JSON.parse(line)).toMatchObject({ request_id: 'client-abc.123:4' });
  });

  it('replaces a malformed or oversized one with a fresh UUID', async () => {
    for (const incoming of ['has spaces in it', 'x'.repeat(200), 'inject\nheader', '<script>']) {
      const response = await testApp.app.inject({ method: 'GET', url: '/health/live', headers: { 'x-request-id': incoming } });
      expect(response.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it('generates one when none is sent, on errors too', async () => {
    const ok = await testApp.app.inject({ method: 'GET', url: '/health/live' });
    const missing = await testApp.app.inject({ method: 'GET', url: '/nowhere' });
    expect(ok.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(missing.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(missing.headers['x-request-id']).not.toBe(ok.headers['x-request-id']);
  });

  it('never writes credentials to the log', async () => {
    await testApp.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: 'Bearer secret-token-value-123', cookie: 'session=cookie-secret-456' } });
    const joined = testApp.logs.join('\n');
    expect(joined).not.toContain('secret-token-value-123');
    expect(joined).not.toContain('cookie-secret-456');
  });
});

describe('metrics', () => {
  let testApp: TestApp;
  beforeAll(async () => {
    testApp = await createTestApp({ backend: 'embedded' });
  });
  afterAll(async () => {
    await testApp.close();
  });

  it('exposes Prometheus text with HTTP metrics labelled by route template', async () => {
    await testApp.app.inject({ method: 'GET', url: '/health/live' });
    await testApp.app.inject({ method: 'DELETE', url: '/api/keys/6f1c2a9e-0000-4000-8000-000000000001' });
    await testApp.app.inject({ method: 'GET', url: '/random/path/12345' });
    const response = await testApp.app.inject({ method: 'GET', url: '/metrics' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = response.body;
    expect(text).toContain('# TYPE http_requests_total counter');
    expect(text).toMatch(/^http_requests_total\{method="GET",route="\/health\/live",status_code="200"\} 1$/m);
    expect(text).toMatch(/^http_requests_total\{method="DELETE",route="\/api\/keys\/:id",status_code="401"\} 1$/m);
    expect(text).toMatch(/^http_requests_total\{method="GET",route="unmatched",status_code="404"\} 1$/m);
    expect(text).not.toContain('6f1c2a9e-0000');
    expect(text).not.toContain('/random/path');
    expect(text).toContain('# TYPE http_request_duration_seconds histogram');
    expect(text).toMatch(/^http_request_duration_seconds_bucket\{le="0\.005",method="GET",route="\/health\/live",status_code="200"\} \d+$/m);
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).toContain('nodejs_eventloop_lag_seconds');
    // Every sample line is `name{labels} value`: the format Prometheus parses.
    for (const line of text.split('\n').filter((candidate) => candidate !== '' && !candidate.startsWith('#'))) {
      expect(line).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? (-?[0-9.e+-]+|nan|[+-]inf)$/i);
    }
  });
});

describe('browser and host protections', () => {
  let testApp: TestApp;
  beforeAll(async () => {
    testApp = await createTestApp({
      backend: 'embedded',
      environment: { CORS_ORIGINS: '["http://localhost:3000"]', ALLOWED_HOSTS: 'gateway.example.com,localhost', DOCS_ENABLED: 'true' },
    });
  });
  afterAll(async () => {
    await testApp.close();
  });

  it('allows the configured origin only', async () => {
    const allowed = await testApp.app.inject({ method: 'GET', url: '/health/live', headers: { host: 'localhost', origin: 'http://localhost:3000' } });
    expect(allowed.headers['access-control-allow-origin']).toBe('http://localhost:3000');
    expect(allowed.headers['access-control-expose-headers']).toContain('x-request-id');
    const other = await testApp.app.inject({ method: 'GET', url: '/health/live', headers: { host: 'localhost', origin: 'https://evil.example' } });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    const preflight = await testApp.app.inject({
      method: 'OPTIONS',
      url: '/api/auth/login',
      headers: { host: 'localhost', origin: 'http://localhost:3000', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,authorization' },
    });
    expect(preflight.statusCode).toBe(204);
    expect(preflight.headers['access-control-allow-headers']).toContain('authorization');
  });

  it('refuses a Host that is not allowed, except on the probes', async () => {
    const refused = await testApp.app.inject({ method: 'GET', url: '/health', headers: { host: 'attacker.example' } });
    expect(refused.statusCode).toBe(400);
    expect(refused.json().error).toMatchObject({ code: 'invalid_request', param: 'host' });
    const allowed = await testApp.app.inject({ method: 'GET', url: '/health/live', headers: { host: 'gateway.example.com:8080' } });
    expect(allowed.statusCode).toBe(200);
    const probe = await testApp.app.inject({ method: 'GET', url: '/health/live', headers: { host: '10.1.2.3:8080' } });
    expect(probe.statusCode).toBe(200);
  });

  it('sends security headers', async () => {
    const response = await testApp.app.inject({ method: 'GET', url: '/health/live', headers: { host: 'localhost' } });
    expect(response.headers['x-content-type-options']).toBe('nosniff');
    expect(response.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(response.headers['strict-transport-security']).toContain('max-age=');
    expect(response.headers['content-security-policy']).toContain("default-src 'self'");
  });

  it('serves the OpenAPI document and the docs UI when enabled', async () => {
    const spec = await testApp.app.inject({ method: 'GET', url: '/openapi.json', headers: { host: 'localhost' } });
    expect(spec.statusCode).toBe(200);
    const document = spec.json();
    expect(document.openapi).toBe('3.1.0');
    expect(Object.keys(document.paths)).toEqual(expect.arrayContaining(['/health', '/api/auth/login', '/api/keys/{id}']));
    const ui = await testApp.app.inject({ method: 'GET', url: '/docs/', headers: { host: 'localhost' } });
    expect(ui.statusCode).toBe(200);
    expect(ui.headers['content-type']).toContain('text/html');
  });

  it('hides the docs when disabled', async () => {
    const quiet = await createTestApp({ backend: 'embedded', environment: { DOCS_ENABLED: 'false' } });
    try {
      expect((await quiet.app.inject({ method: 'GET', url: '/docs' })).statusCode).toBe(404);
      expect((await quiet.app.inject({ method: 'GET', url: '/openapi.json' })).statusCode).toBe(404);
      expect((await quiet.app.inject({ method: 'GET', url: '/health/live' })).headers['content-security-policy']).toContain("default-src 'none'");
    } finally {
      await quiet.close();
    }
  });
});
