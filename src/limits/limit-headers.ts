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

/** The request-rate headers, IETF and OpenAI names, for one limit and where it stands. */
export function requestRateHeaders(limit: number, standing: { remaining: number; resetMs: number }): Record<string, string> {
  return {
    'ratelimit-limit': String(limit),
    'ratelimit-remaining': String(standing.remaining),
    'ratelimit-reset': String(Math.ceil(standing.resetMs / 1000)),
    'x-ratelimit-limit-requests': String(limit),
    'x-ratelimit-remaining-requests': String(standing.remaining),
    'x-ratelimit-reset-requests': duration(standing.resetMs),
  };
}

export function limitHeaders(input: {
  limits: EffectiveLimits;
  rates: Array<{ remaining: number; resetMs: number }>;
  quotas: Array<{ used: number; resetMs: number }>;
  quotaLimits: number[];
}): Record<string, string> {
  const headers = requestRateHeaders(input.limits.requests, input.rates[0] ?? { remaining: 0, resetMs: 0 });
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
