// What the gateway changes in a request before vLLM sees it. Fields that would let a caller escape
// the gateway's control are the gateway's to set; usage is always requested on streams so it can
// be accounted; everything else passes through as the caller wrote it.
import { createHmac } from 'node:crypto';
import type { Principal } from '../auth/authenticate.js';
import { BoundedMap } from '../platform/bounded-map.js';

/** Set by the gateway only: scheduling priority, prefix-cache isolation, request identity, KV transfer. */
export const gatewayOwnedFields = ['priority', 'cache_salt', 'request_id', 'kv_transfer_params'] as const;

export interface PolicyOptions {
  cacheSaltSecret: string | null;
  priorityByRole: Record<'user' | 'admin', number> | null;
}

export interface PreparedRequest {
  /** The JSON sent to vLLM. */
  upstreamBody: string;
  stream: boolean;
  /** Whether the caller asked for the usage chunk; if not, the relay drops it from the stream. */
  clientWantsUsage: boolean;
  model: string | null;
}

export function prepareUpstreamRequest(input: { body: Record<string, unknown>; principal: Principal; policy: PolicyOptions }): PreparedRequest {
  const body = { ...input.body };
  for (const field of gatewayOwnedFields) delete body[field];

  if (input.policy.cacheSaltSecret !== null) body.cache_salt = cacheSaltFor(input.principal.userId, input.policy.cacheSaltSecret);
  if (input.policy.priorityByRole !== null) body.priority = input.policy.priorityByRole[input.principal.role];

  const stream = body.stream === true;
  const streamOptions = isRecord(body.stream_options) ? body.stream_options : null;
  const clientWantsUsage = stream && streamOptions?.include_usage === true;
  if (stream && !clientWantsUsage) {
    // Without include_usage vLLM ignores continuous_usage_stats, so asking for usage must not turn
    // it on: the caller then sees exactly the stream vLLM would have sent it.
    body.stream_options = { include_usage: true };
  }

  return { upstreamBody: JSON.stringify(body), stream, clientWantsUsage, model: typeof body.model === 'string' ? body.model : null };
}

/** Salts already computed, per secret and user: an HMAC per request is measurable on the hot path. */
const knownSalts = new BoundedMap<string, string>(10_000);

/** Stable per user and secret, and reveals neither. */
export function cacheSaltFor(userId: string, secret: string): string {
  const cacheKey = `${secret}\u0000${userId}`;
  const known = knownSalts.get(cacheKey);
  if (known !== undefined) return known;
  const salt = createHmac('sha256', secret).update(`cache-salt:${userId}`).digest('base64url').slice(0, 32);
  knownSalts.set(cacheKey, salt);
  return salt;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
