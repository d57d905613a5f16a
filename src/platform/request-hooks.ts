// Hooks every request passes through: the request id echoed back, the Host check, one access-log
// line and the HTTP metrics when the answer is done.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError } from '../errors.js';
import { sendError } from './error-handler.js';
import type { Metrics } from './metrics.js';
import { writeAccessLine } from './access-log.js';

/** Probes come from orchestrators that address the pod by IP, so they skip the Host check. */
const hostCheckExemptPaths = new Set(['/health/live', '/health/ready']);

export function installRequestHooks(app: FastifyInstance, options: { metrics: Metrics; allowedHosts: string[] | null }): void {
  const isAllowedHost = options.allowedHosts === null ? null : createHostMatcher(options.allowedHosts);

  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    if (isAllowedHost !== null && !hostCheckExemptPaths.has(request.url) && !isAllowedHost(request.hostname)) {
      sendError(reply, new GatewayError('invalid_request', 'Host not allowed', { param: 'host' }));
      return;
    }
    done();
  });

  function recordCompleted(request: FastifyRequest, statusCode: number, elapsedMs: number): void {
    const route = request.routeOptions.url ?? 'unmatched';
    const labels = { method: request.method, route, status_code: String(statusCode) };
    options.metrics.httpRequestsTotal.inc(labels);
    options.metrics.httpRequestDurationSeconds.observe(labels, elapsedMs / 1000);
    writeAccessLine(request.log, { method: request.method, url: request.url, route, status: statusCode, durationMs: elapsedMs });
  }

  app.addHook('onResponse', (request, reply, done) => {
    recordCompleted(request, reply.statusCode, reply.elapsedTime);
    done();
  });
  // Fastify runs no onResponse hook for a hijacked reply (a relayed stream): its handler reports the end.
  app.decorate('recordHijackedRequest', (request: FastifyRequest, reply: FastifyReply) => recordCompleted(request, reply.raw.statusCode, reply.elapsedTime));
}

declare module 'fastify' {
  interface FastifyInstance {
    recordHijackedRequest(request: FastifyRequest, reply: FastifyReply): void;
  }
}

/** Matches a Host header's name against `example.com`, `*.example.com` or `*`. */
export function createHostMatcher(allowedHosts: string[]): (hostname: string) => boolean {
  const exact = new Set<string>();
  const suffixes: string[] = [];
  let any = false;
  // A port in the list is ignored: the Host check is about names, the port is the listener's.
  for (const host of allowedHosts.map((entry) => entry.toLowerCase().replace(/^([^:]+):\d+$/, '$1'))) {
    if (host === '*') any = true;
    else if (host.startsWith('*.')) suffixes.push(host.slice(1));
    else exact.add(host);
  }
  return (hostname) => {
    if (any) return true;
    const name = hostname.toLowerCase();
    return exact.has(name) || suffixes.some((suffix) => name.endsWith(suffix));
  };
}
