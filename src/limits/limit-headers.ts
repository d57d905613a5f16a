// The headers that tell a client where it stands: the IETF RateLimit-* fields for the request
// rate, and OpenAI's x-ratelimit-*-requests / -tokens, which OpenAI clients already read.
import type { EffectiveLimits } from './effective-limits.js';

export function retryAfterSeconds(milliseconds: number): number {
  return Math.max(1, Math.ceil(milliseconds / 1000));
}

/** OpenAI writes resets as durations such as `1s` or `6m0s`. */
function duration(milliseconds: number): string {
  const seconds = Math.max(0, Math.ceil(milliseconds / 1000));
  return seconds >= 60 ? `${Math.floor(seconds / 60)}m${seconds % 60}s` : `${seconds}s`;
}

export function limitHeaders(input: {
  limits: EffectiveLimits;
  rates: Array<{ remaining: number; resetMs: number }>;
  quotas: Array<{ used: number; resetMs: number }>;
  quotaLimits: number[];
}): Record<string, string> {
  const userRate = input.rates[0];
  const headers: Record<string, string> = {
    'ratelimit-limit': String(input.limits.requests),
    'ratelimit-remaining': String(userRate?.remaining ?? 0),
    'ratelimit-reset': String(Math.ceil((userRate?.resetMs ?? 0) / 1000)),
    'x-ratelimit-limit-requests': String(input.limits.requests),
    'x-ratelimit-remaining-requests': String(userRate?.remaining ?? 0),
    'x-ratelimit-reset-requests': duration(userRate?.resetMs ?? 0),
  };
  // The tightest token window is the one a client should pace itself by: the first configured.
  const quota = input.quotas[0];
  const quotaLimit = input.quotaLimits[0];
  if (quota !== undefined && quotaLimit !== undefined) {
    headers['x-ratelimit-limit-tokens'] = String(quotaLimit);
    headers['x-ratelimit-remaining-tokens'] = String(Math.max(0, quotaLimit - quota.used));
    headers['x-ratelimit-reset-tokens'] = duration(quota.resetMs);
  }
  return headers;
}
