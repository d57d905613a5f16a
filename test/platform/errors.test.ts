import { Type } from '@sinclair/typebox';
import { Gauge } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.js';
import { createMetrics } from '../../src/platform/metrics.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';

// The platform's error handling, exercised through the real app with a few routes of its own.
describe('error envelope', () => {
  let testApp: TestApp;

  beforeAll(async () => {
    const metrics = createMetrics();
    // A collector that fails the way a bug would: /metrics must answer a generic 500.
    new Gauge({
      name: 'exploding_gauge',
      help: 'fails on purpose',
      registers: [metrics.registry],
      collect() {
        throw new Error('internal detail: password=hunter2 at db.internal:5432');
      },
    });
    testApp = await createTestApp({
      backend: 'embedded',
      environment: { BODY_LIMIT_BYTES: '2048' },
      dependencies: { metrics },
      build: {
        extend: async (app) => {
          app.post(
            '/test/echo',
            {
              schema: {
                body: Type.Object(
                  { name: Type.String({ minLength: 1 }), temperature: Type.Optional(Type.Number({ minimum: 0, maximum: 2 })) },
                  { additionalProperties: false },
                ),
              },
            },
            (request) => request.body,
          );
          app.get('/test/conflict', () => {
            throw new GatewayError('conflict', 'Already exists', { param: 'email' });
          });
          await Promise.resolve();
        },
      },
    });
  });

  afterAll(async () => {
    await testApp.close();
  });

  function expectEnvelope(body: unknown, code: string, type: string): void {
    expect(body).toMatchObject({ error: { code, type, message: expect.any(String) } });
    expect(Object.keys((body as { error: object }).error).sort()).toEqual(['code', 'message', 'param', 'type']);
  }

  it('answers a schema violation with 400 validation_failed and the parameter', async () => {
    const response = await testApp.app.inject({ method: 'POST', url: '/test/echo', payload: { name: 'a', temperature: 3 } });
    expect(response.statusCode).toBe(400);
    expectEnvelope(response.json(), 'validation_failed', 'invalid_request_error');
    expect(response.json().error.param).toBe('temperature');
    expect(response.json().error.message).toContain('temperature');
  });

  it('refuses unknown fields instead of dropping them silently', async () => {
    const response = await testApp.app.inject({ method: 'POST', url: '/test/echo', payload: { name: 'a', role: 'admin' } });
    expect(response.statusCode).toBe(400);
    expect(response.json().error.param).toBe('role');
  });

  it('answers malformed JSON with 400 invalid_json', async () => {
    const response = await testApp.app.inject({ method: 'POST', url: '/test/echo', headers: { 'content-type': 'application/json' }, payload: '{"name": "a",' });
    expect(response.statusCode).toBe(400);
    expectEnvelope(response.json(), 'invalid_json', 'invalid_request_error');
  });

  it('answers an empty JSON body with 400 invalid_json', async () => {
    const response = await testApp.app.inject({ method: 'POST', url: '/test/echo', headers: { 'content-type': 'application/json' }, payload: '' });
    expect(response.statusCode).toBe(400);
    expect(response.json().error.code).toBe('invalid_json');
  });

  it('answers an unknown route with 404 not_found', async () => {
    const response = await testApp.app.inject({ method: 'GET', url: '/no/such/route' });
    expect(response.statusCode).toBe(404);
    expectEnvelope(response.json(), 'not_found', 'not_found_error');
  });

  it('answers a known path with the wrong method with 405 and Allow', async () => {
    const response = await testApp.app.inject({ method: 'DELETE', url: '/health' });
    expect(response.statusCode).toBe(405);
    expect(response.headers.allow).toBe('GET, HEAD');
    expectEnvelope(response.json(), 'method_not_allowed', 'invalid_request_error');
    const post = await testApp.app.inject({ method: 'GET', url: '/test/echo' });
    expect(post.statusCode).toBe(405);
    expect(post.headers.allow).toBe('POST');
  });

  it('answers a body over the limit with 413', async () => {
    const response = await testApp.app.inject({ method: 'POST', url: '/test/echo', payload: { name: 'x'.repeat(4096) } });
    expect(response.statusCode).toBe(413);
    expectEnvelope(response.json(), 'payload_too_large', 'invalid_request_error');
  });

  it('answers a wrong content type with 415', async () => {
    const response = await testApp.app.inject({ method: 'POST', url: '/test/echo', headers: { 'content-type': 'text/xml' }, payload: '<name>a</name>' });
    expect(response.statusCode).toBe(415);
    expectEnvelope(response.json(), 'unsupported_media_type', 'invalid_request_error');
  });

  it('answers the gateway own errors with their status, code and param', async () => {
    const response = await testApp.app.inject({ method: 'GET', url: '/test/conflict' });
    expect(response.statusCode).toBe(409);
    expect(response.json()).toEqual({ error: { message: 'Already exists', type: 'invalid_request_error', code: 'conflict', param: 'email' } });
  });

  it('answers an unexpected failure with a generic 500 that leaks nothing', async () => {
    const response = await testApp.app.inject({ method: 'GET', url: '/metrics' });
    expect(response.statusCode).toBe(500);
    expectEnvelope(response.json(), 'internal_error', 'server_error');
    expect(response.body).not.toMatch(/hunter2|db\.internal|stack|at /);
  });

  it('puts a valid JSON body through', async () => {
    const response = await testApp.app.inject({ method: 'POST', url: '/test/echo', payload: { name: 'ok', temperature: 1.5 } });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ name: 'ok', temperature: 1.5 });
  });
});
