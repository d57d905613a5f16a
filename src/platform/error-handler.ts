// The one error handler, in three tiers: the gateway's own errors, Fastify's (validation, body
// parsing, size), then anything unexpected, which becomes a generic 500 with detail only in the log.
// Also answers unknown routes: 405 with Allow when the path exists under another method, else 404.
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import FindMyWay from 'find-my-way';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError, isGatewayError, type ErrorCode } from '../errors.js';
import { isDatabaseUnavailable, isUnstorableText } from './database-errors.js';

const frameworkErrorCodes: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
};

const codesByStatus: Record<number, ErrorCode> = {
  400: 'invalid_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  503: 'service_unavailable',
};

export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | Error, request, reply) => {
    const gatewayError = toGatewayError(error);
    if (gatewayError === null) {
      request.log.error({ err: error }, 'unexpected error');
      return sendError(reply, new GatewayError('internal_error', 'Internal server error'));
    }
    if (gatewayError.status >= 500) request.log.error({ err: error }, gatewayError.message);
    else request.log.info({ code: gatewayError.code, status: gatewayError.status }, gatewayError.message);
    return sendError(reply, gatewayError);
  });

  installNotFoundHandler(app);
}

export function sendError(reply: FastifyReply, error: GatewayError): FastifyReply {
  // RFC 6750: every 401 names the scheme, so clients know a bearer token is what is missing.
  if (error.status === 401 && error.headers['www-authenticate'] === undefined) {
    reply.header('www-authenticate', 'Bearer realm="vllm-chat-gateway"');
  }
  return reply.code(error.status).headers(error.headers).type('application/json; charset=utf-8').send(error.toEnvelope());
}

/** The status a failure is answered with, as the handler would answer it (500 for the unexpected). */
export function answeredStatus(error: unknown): number {
  return error instanceof Error ? (toGatewayError(error)?.status ?? 500) : 500;
}

function toGatewayError(error: FastifyError | Error): GatewayError | null {
  if (isGatewayError(error)) return error;
  const fastifyError = error as Partial<FastifyError>;
  if (fastifyError.validation !== undefined && fastifyError.validation.length > 0) {
    const first = fastifyError.validation[0];
    const param = first === undefined ? null : parameterName(first.instancePath, first.params);
    const where = fastifyError.validationContext ?? 'body';
    const message = first === undefined ? 'Invalid request' : `Invalid ${where}: ${param ?? where} ${describeViolation(first)}`;
    return new GatewayError('validation_failed', message, { param });
  }
  if (typeof fastifyError.code === 'string') {
    const code = frameworkErrorCodes[fastifyError.code];
    if (code !== undefined) return new GatewayError(code, error.message);
  }
  if (error instanceof SyntaxError && fastifyError.statusCode === 400) return new GatewayError('invalid_json', 'Body is not valid JSON');
  const status = fastifyError.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    return new GatewayError(codesByStatus[status] ?? 'invalid_request', error.message, { status });
  }
  if (isUnstorableText(error)) return new GatewayError('validation_failed', 'Text cannot contain the NUL character (U+0000)');
  // After the 4xx: a client that hung up mid-upload also raises ECONNRESET, and that is its own doing.
  if (isDatabaseUnavailable(error)) {
    return new GatewayError('service_unavailable', 'A service the gateway depends on is unreachable; retry shortly', { headers: { 'retry-after': '1' } });
  }
  return null;
}

/** Ajv's message, but a bounded number says both bounds ("must be between 0 and 2"). */
function describeViolation(violation: { keyword: string; message?: string | undefined; parentSchema?: unknown }): string {
  const schema = violation.parentSchema as { minimum?: unknown; maximum?: unknown } | undefined;
  if ((violation.keyword === 'minimum' || violation.keyword === 'maximum') && typeof schema?.minimum === 'number' && typeof schema.maximum === 'number') {
    return `must be between ${schema.minimum} and ${schema.maximum}`;
  }
  return violation.message ?? 'is invalid';
}

/** `/messages/0/role` → `messages[0].role`; a missing property names itself. */
function parameterName(instancePath: string, params: Record<string, unknown>): string | null {
  const segments = instancePath.split('/').filter((segment) => segment !== '');
  if (typeof params.missingProperty === 'string') segments.push(params.missingProperty);
  if (typeof params.additionalProperty === 'string') segments.push(params.additionalProperty);
  if (segments.length === 0) return null;
  return segments.reduce((path, segment) => (/^\d+$/.test(segment) ? `${path}[${segment}]` : path === '' ? segment : `${path}.${segment}`), '');
}

const routableMethods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

function installNotFoundHandler(app: FastifyInstance): void {
  // Fastify has no 405; a second router holding only method + path answers "which methods exist here".
  const routesByPath = FindMyWay();
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if ((routableMethods as readonly string[]).includes(method) && !routesByPath.hasRoute(method as 'GET', route.url)) {
        routesByPath.on(method as 'GET', route.url, () => undefined);
      }
    }
  });

  app.setNotFoundHandler((request: FastifyRequest, reply: FastifyReply) => {
    const path = request.url.split('?')[0] ?? '/';
    const allowed = routableMethods.filter((method) => routesByPath.find(method, path) !== null);
    if (allowed.length > 0) {
      const allow = allowed.flatMap((method) => (method === 'GET' ? ['GET', 'HEAD'] : [method])).join(', ');
      return sendError(reply, new GatewayError('method_not_allowed', `Method ${request.method} is not allowed on ${path}`, { headers: { allow } }));
    }
    return sendError(reply, new GatewayError('not_found', `No route for ${request.method} ${path}`));
  });
}

/**
 * Answers what Node's HTTP parser refuses before Fastify sees a request (oversized headers, a
 * malformed request line, a header timeout) with the same envelope, then closes the socket.
 */
export function handleClientError(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const gatewayError =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? new GatewayError('headers_too_large', 'Request headers are too large')
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new GatewayError('request_timeout', 'The request took too long to arrive')
        : new GatewayError('invalid_request', 'Malformed HTTP request');
  const body = JSON.stringify(gatewayError.toEnvelope());
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${gatewayError.status} ${STATUS_CODES[gatewayError.status] ?? ''}\r\n` +
        `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `x-request-id: ${randomUUID()}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}
