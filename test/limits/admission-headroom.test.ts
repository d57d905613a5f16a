// When an admission may run beside vLLM's start: only for a caller whose last answer from Redis on
// this instance left room on every limit — a tenth of each rate (at least 2), twice the tokens
// reserved, half the concurrent generations — from the same address bucket, within a minute; what
// a claim may use is counted off at once, and a refusal withdraws it until Redis admits again.
import { describe, expect, it } from 'vitest';
import { createAdmissionHeadroom, requestMargin } from '../../src/limits/admission-headroom.js';

const limits = { requests: 100, ipRequests: 1000, maxConcurrent: 4 };
const now = 1_000_000;

function admittedHeadroom(left: { requestsLeft?: number; ipRequestsLeft?: number; tokensLeft?: number } = {}) {
  const headroom = createAdmissionHeadroom();
  headroom.admitted('user', { ipBucket: 'ip', requestsLeft: 50, ipRequestsLeft: 500, tokensLeft: Infinity, ...left }, now);
  return headroom;
}

const claim = (headroom: ReturnType<typeof createAdmissionHeadroom>, overrides: { ipBucket?: string; reserveTokens?: number; now?: number } = {}) =>
  headroom.claim({ userId: 'user', ipBucket: 'ip', reserveTokens: 10, limits, now, ...overrides });

describe('admission headroom', () => {
  it('needs an admission from Redis first', () => {
    expect(claim(createAdmissionHeadroom())).toBe(false);
    expect(claim(admittedHeadroom())).toBe(true);
  });

  it('keeps a tenth of each rate, at least 2', () => {
    expect(requestMargin(100)).toBe(10);
    expect(requestMargin(5)).toBe(2);
    const headroom = admittedHeadroom({ requestsLeft: 11 });
    expect(claim(headroom)).toBe(true);
    expect(claim(headroom)).toBe(true);
    // 11 - 2 claimed = 9 left, under the margin of 10.
    expect(claim(headroom)).toBe(false);
    expect(claim(admittedHeadroom({ ipRequestsLeft: 99 }))).toBe(false);
  });

  it('keeps twice the reservation of tokens', () => {
    const headroom = admittedHeadroom({ tokensLeft: 45 });
    expect(claim(headroom, { reserveTokens: 20 })).toBe(true);
    expect(claim(headroom, { reserveTokens: 20 })).toBe(false);
  });

  it('leaves half the concurrent generations free on this instance', () => {
    const headroom = admittedHeadroom();
    headroom.started('user');
    expect(claim(headroom)).toBe(true);
    headroom.started('user');
    expect(claim(headroom)).toBe(false);
    headroom.ended('user');
    expect(claim(headroom)).toBe(true);
  });

  it('asks the same address bucket, and an answer under a minute old', () => {
    expect(claim(admittedHeadroom(), { ipBucket: 'another' })).toBe(false);
    expect(claim(admittedHeadroom(), { now: now + 60_001 })).toBe(false);
  });

  it('withdraws it on a refusal until Redis admits again', () => {
    const headroom = admittedHeadroom();
    headroom.withdraw('user');
    expect(claim(headroom)).toBe(false);
    headroom.admitted('user', { ipBucket: 'ip', requestsLeft: 50, ipRequestsLeft: 500, tokensLeft: Infinity }, now);
    expect(claim(headroom)).toBe(true);
  });
});
