// The outbound HTTP client (undici): one keep-alive connection pool per upstream origin, shared by
// every request, so calling vLLM costs no connection setup on the request path.
import { Agent, request, type Dispatcher } from 'undici';

export type HttpClient = Dispatcher;

export function createHttpClient(options: { connectTimeoutMs?: number } = {}): Agent {
  return new Agent({
    connect: { timeout: options.connectTimeoutMs ?? 5000 },
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000,
    // Streams can stay open for minutes; per-request timeouts are set by the caller.
    headersTimeout: 0,
    bodyTimeout: 0,
    connections: null,
    pipelining: 1,
  });
}

export { request as httpRequest };
export type { Dispatcher };
