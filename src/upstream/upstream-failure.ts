// Classifies what can go wrong with a call to vLLM, once, where the call is made: a transport
// failure (connect, timeout, reset) or an error answer from vLLM, turned into the gateway's error
// with the right status, and a bounded `kind` for metrics.
import { GatewayError } from '../errors.js';

export type UpstreamFailureKind = 'connect' | 'timeout' | 'reset' | 'http_5xx' | 'auth' | 'idle_timeout' | 'malformed';

export class UpstreamFailure extends GatewayError {
  constructor(
    readonly kind: UpstreamFailureKind,
    error: GatewayError,
  ) {
    super(error.code, error.message, { param: error.param, headers: error.headers, status: error.status, cause: error.cause });
  }
}

/** A transport error from undici (before or during the response). */
export function classifyTransportError(error: unknown): UpstreamFailure {
  const code = (error as { code?: unknown } | null)?.code;
  const name = (error as { name?: unknown } | null)?.name;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || name === 'TimeoutError') {
    return new UpstreamFailure('timeout', new GatewayError('upstream_timeout', 'vLLM did not answer in time', { cause: error }));
  }
  if (code === 'UND_ERR_BODY_TIMEOUT') {
    return new UpstreamFailure('idle_timeout', new GatewayError('upstream_timeout', 'vLLM stopped sending in the middle of the answer', { cause: error }));
  }
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') {
    return new UpstreamFailure('reset', new GatewayError('upstream_unavailable', 'The connection to vLLM was lost', { cause: error }));
  }
  return new UpstreamFailure('connect', new GatewayError('upstream_unavailable', 'vLLM is unreachable', { cause: error }));
}

interface VllmErrorFields {
  message: string | null;
  param: string | null;
}

/** Reads vLLM's error body in any of its forms: `{error: {...}}` (≥ 0.10.1), flat `{object: "error", ...}`, or `{error: "Unauthorized"}`. */
export function readVllmError(body: string): VllmErrorFields {
  try {
    const parsed = JSON.parse(body) as Record<string, unknown>;
    const inner = typeof parsed.error === 'object' && parsed.error !== null ? (parsed.error as Record<string, unknown>) : parsed;
    const message = typeof inner.message === 'string' ? inner.message : typeof parsed.error === 'string' ? parsed.error : null;
    return { message, param: typeof inner.param === 'string' ? inner.param : null };
  } catch {
    return { message: null, param: null };
  }
}

/**
 * An error answer from vLLM. Its client errors (unknown model, context too long, bad field) reach
 * the caller with vLLM's status and message; its own failures become 502/503 and count against it.
 */
export function classifyErrorResponse(statusCode: number, body: string): { error: GatewayError; upstreamFault: UpstreamFailureKind | null } {
  const { message, param } = readVllmError(body);
  const text = message ?? `vLLM answered HTTP ${statusCode}`;
  if (statusCode === 401 || statusCode === 403) {
    return { error: new GatewayError('upstream_error', 'vLLM refused the gateway\'s credentials (check VLLM_API_KEY)'), upstreamFault: 'auth' };
  }
  if (statusCode === 404) return { error: new GatewayError('model_not_found', text, { param: param ?? 'model' }), upstreamFault: null };
  if (statusCode === 503 || statusCode === 429) {
    return { error: new GatewayError('service_unavailable', 'vLLM is overloaded; retry shortly', { headers: { 'retry-after': '1' } }), upstreamFault: 'http_5xx' };
  }
  if (statusCode >= 500) return { error: new GatewayError('upstream_error', 'vLLM failed to answer', { param: null }), upstreamFault: 'http_5xx' };
  if (/context length/i.test(text)) return { error: new GatewayError('context_length_exceeded', text, { param, status: 400 }), upstreamFault: null };
  const status = statusCode === 422 ? 400 : statusCode;
  return { error: new GatewayError('invalid_request', text, { param, status: status >= 400 && status < 500 ? status : 400 }), upstreamFault: null };
}
