// Asks each vLLM server whether its engine is alive (GET /health answers 200 with an empty body,
// 503 when the engine is dead). Used by the gateway's own /health.
import { httpRequest, type HttpClient } from '../platform/http-client.js';

export interface UpstreamHealth {
  url: string;
  healthy: boolean;
  latencyMs: number;
  error: string | null;
}

export async function checkUpstreamHealth(options: { client: HttpClient; baseUrl: string; timeoutMs: number }): Promise<UpstreamHealth> {
  const started = performance.now();
  try {
    const response = await httpRequest(`${options.baseUrl}/health`, {
      method: 'GET',
      dispatcher: options.client,
      signal: AbortSignal.timeout(options.timeoutMs),
    });
    await response.body.dump();
    const healthy = response.statusCode === 200;
    return { url: options.baseUrl, healthy, latencyMs: elapsed(started), error: healthy ? null : `HTTP ${response.statusCode}` };
  } catch (error) {
    return { url: options.baseUrl, healthy: false, latencyMs: elapsed(started), error: describeFailure(error) };
  }
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}

function describeFailure(error: unknown): string {
  if (error instanceof Error) {
    if (error.name === 'TimeoutError' || error.name === 'AbortError') return 'timeout';
    const code = (error as Error & { code?: unknown }).code;
    return typeof code === 'string' ? code : error.message;
  }
  return 'unknown error';
}
