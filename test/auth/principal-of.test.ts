// A principal taken from an earlier judgment of its credential is not confirmed until the
// admission confirms it: principalOf refuses it, so no route can act on it before runAdmitted.
import type { FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { principalOf, principalToAdmit, type Principal } from '../../src/auth/authenticate.js';

const principal: Principal = { kind: 'api_key', userId: 'user-1', role: 'user', limits: { rate_limit_requests: null, rate_limit_window_seconds: null, token_quota_per_minute: null, token_quota_per_day: null, max_concurrent_streams: null }, apiKeyId: 'key-1' };
const requestWith = (fields: Pick<FastifyRequest, 'principal' | 'accessPrecondition'>) => fields as FastifyRequest;

describe('principalOf', () => {
  it('gives a confirmed principal', () => {
    expect(principalOf(requestWith({ principal, accessPrecondition: null }))).toBe(principal);
  });

  it('refuses a principal whose credential still waits for the admission to confirm it', () => {
    const pending = requestWith({ principal, accessPrecondition: { keys: ['auth:key:x'], values: ['{}'] } });
    expect(() => principalOf(pending)).toThrow(/not confirmed/);
    expect(principalToAdmit(pending)).toBe(principal);
  });

  it('refuses a route without its requireUser hook', () => {
    expect(() => principalOf(requestWith({ principal: null, accessPrecondition: null }))).toThrow(/requireUser/);
    expect(() => principalToAdmit(requestWith({ principal: null, accessPrecondition: null }))).toThrow(/requireUser/);
  });
});
