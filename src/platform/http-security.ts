// Browser-facing protections: CORS for the configured front-end origins, and security headers.
import cors from '@fastify/cors';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import helmet, { type HelmetOptions } from 'helmet';

export const exposedResponseHeaders = [
  'x-request-id',
  'retry-after',
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
  'x-ratelimit-limit-requests',
  'x-ratelimit-remaining-requests',
  'x-ratelimit-reset-requests',
  'x-ratelimit-limit-tokens',
  'x-ratelimit-remaining-tokens',
  'x-ratelimit-reset-tokens',
];

export async function registerHttpSecurity(app: FastifyInstance, options: { corsOrigins: string[]; docsEnabled: boolean }): Promise<void> {
  const headers = securityHeaders({
    // The API answers JSON and SSE only; the docs UI, when on, needs its own scripts and styles.
    contentSecurityPolicy: options.docsEnabled
      ? { directives: { defaultSrc: ["'self'"], scriptSrc: ["'self'"], styleSrc: ["'self'", 'https:', "'unsafe-inline'"], imgSrc: ["'self'", 'data:', 'validator.swagger.io'] } }
      : { directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    crossOriginResourcePolicy: { policy: 'same-site' },
  });
  // The same headers on every answer, computed once: helmet's per-request work (it re-parses its
  // directives on each call) was a measurable share of a relayed request.
  app.addHook('onRequest', (_request, reply, done) => {
    reply.headers(headers);
    done();
  });

  if (options.corsOrigins.length === 0) return;
  const anyOrigin = options.corsOrigins.includes('*');
  await app.register(cors, {
    origin: anyOrigin ? '*' : options.corsOrigins,
    // Bearer tokens travel in a header, not cookies; credentials stay off with a wildcard as browsers require.
    credentials: !anyOrigin,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: ['authorization', 'content-type', 'x-request-id', 'idempotency-key'],
    exposedHeaders: exposedResponseHeaders,
    maxAge: 600,
  });
}

/** The headers helmet would set with these options, read once from a stand-in response. */
export function securityHeaders(options: HelmetOptions): Record<string, string> {
  const collected: Record<string, string> = {};
  const response = {
    setHeader(name: string, value: string | number | readonly string[]) {
      collected[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value);
    },
    removeHeader() {},
  };
  helmet(options)({} as IncomingMessage, response as unknown as ServerResponse, (error?: unknown) => {
    if (error instanceof Error) throw error;
  });
  return collected;
}
