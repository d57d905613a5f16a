// The outbound HTTP client (undici): one keep-alive connection pool per upstream origin, shared by
// every request, so calling vLLM costs no connection setup on the request path.
import { Agent, request, type Dispatcher } from 'undici';

export type HttpClient = Dispatcher;

export function createHttpClient(options: { connectTimeoutMs?: number; keepAliveTimeoutMs?: number } = {}): Agent {
  const keepAliveTimeout = options.keepAliveTimeoutMs ?? 4000;
  return new Agent({
    connect: { timeout: options.connectTimeoutMs ?? 5000 },
    // How long an idle connection is kept. A server that announces its own (Keep-Alive: timeout=N)
    // is believed only up to this: an announcement must not keep a connection longer than we would.
    keepAliveTimeout,
    keepAliveMaxTimeout: keepAliveTimeout,
    // Streams can stay open for minutes; per-request timeouts are set by the caller.
    headersTimeout: 0,
    bodyTimeout: 0,
    connections: null,
    pipelining: 1,
  });
}

export { request as httpRequest };
export type { Dispatcher };
