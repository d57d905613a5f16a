// The limits that apply to one user: an administrator's override, else the role's default, else
// the global default from the environment. 0 for a token quota means none.
import { isIP } from 'node:net';
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
 * bucketed by it; an IPv4 address mapped into IPv6 (however it is written) counts as the IPv4 address.
 */
export function ipBucket(ip: string): string {
  if (isIP(ip) === 4) return ip;
  const groups = expandIpv6(ip);
  if (groups === null) return ip;
  const mapped = groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff;
  if (mapped) {
    const high = groups[6] ?? 0;
    const low = groups[7] ?? 0;
    return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
  }
  return `${groups
    .slice(0, 4)
    .map((group) => group.toString(16))
    .join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (with `::` and a trailing dotted IPv4 part resolved), or null. */
function expandIpv6(ip: string): number[] | null {
  if (isIP(ip) !== 6) return null;
  let text = ip.toLowerCase().replace(/%.*$/, '');
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted?.[1] !== undefined) {
    const [a = 0, b = 0, c = 0, d = 0] = dotted[1].split('.').map(Number);
    text = `${text.slice(0, -dotted[1].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const missing = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(Math.max(0, missing)).fill('0'), ...tailGroups].map((group) => Number.parseInt(group, 16));
  return groups.length === 8 && groups.every((group) => Number.isInteger(group) && group >= 0 && group <= 0xffff) ? groups : null;
}
