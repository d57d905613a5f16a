// Browser-facing protections: CORS for the configured front-end origins, and security headers.
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';

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
  await app.register(helmet, {
    // The API answers JSON and SSE only; the docs UI, when on, needs its own scripts and styles.
    contentSecurityPolicy: options.docsEnabled
      ? { directives: { defaultSrc: ["'self'"], scriptSrc: ["'self'"], styleSrc: ["'self'", 'https:', "'unsafe-inline'"], imgSrc: ["'self'", 'data:', 'validator.swagger.io'] } }
      : { directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    crossOriginResourcePolicy: { policy: 'same-site' },
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
