// The limits that apply to one user: an administrator's override, else the role's default, else
// the global default from the environment. 0 for a token quota means none.
import type { Config } from '../config.js';
import type { LimitOverrides } from '../auth/users-repository.js';

export interface EffectiveLimits {
  requests: number;
  windowSeconds: number;
  tokensPerMinute: number;
  tokensPerDay: number;
  maxConcurrentStreams: number;
}

export function effectiveLimits(input: { config: Config['limits']; role: 'user' | 'admin'; overrides: LimitOverrides }): EffectiveLimits {
  const { config, overrides } = input;
  const role = config.byRole[input.role] ?? {};
  return {
    requests: overrides.rate_limit_requests ?? role.requests ?? config.userRequests,
    windowSeconds: overrides.rate_limit_window_seconds ?? role.window ?? config.userWindowSeconds,
    tokensPerMinute: overrides.token_quota_per_minute ?? role.tokens_per_minute ?? config.tokenQuotaPerMinute,
    tokensPerDay: overrides.token_quota_per_day ?? role.tokens_per_day ?? config.tokenQuotaPerDay,
    maxConcurrentStreams: overrides.max_concurrent_streams ?? role.concurrent_streams ?? config.maxConcurrentStreams,
  };
}

/**
 * The client's bucket for per-IP limits. IPv6 users usually hold a whole /64, so they are
 * bucketed by it; an IPv4 address mapped into IPv6 counts as the IPv4 address.
 */
export function ipBucket(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped?.[1] !== undefined) return mapped[1];
  if (!ip.includes(':')) return ip;
  const [head = '', tail = ''] = ip.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === '' ? [] : tail.split(':');
  const missing = ip.includes('::') ? 8 - headGroups.length - tailGroups.length : 0;
  const groups = [...headGroups, ...Array<string>(Math.max(0, missing)).fill('0'), ...tailGroups];
  return `${groups
    .slice(0, 4)
    .map((group) => group.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
