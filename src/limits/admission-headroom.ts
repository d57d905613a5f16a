// Which admissions may run beside vLLM's start instead of before it. An admission is one Redis
// round trip (0.3–1.4 ms on a small VM, most of a gateway's added latency); a caller far from every
// limit is admitted all but surely, so its request can leave for vLLM at once while the check runs,
// nothing reaching the client until Redis has answered (a refusal aborts vLLM's request at once).
//
// Only a caller whose last answer from Redis, on this instance, left room on every limit
// qualifies. A refusal, or a check decided without Redis, withdraws that until Redis admits the
// caller again, so a caller at its limits reaches vLLM at most once per refusal and instance.
import { BoundedMap } from '../platform/bounded-map.js';

/** What Redis's last admission of a caller left, and what this instance started since. */
interface Headroom {
  at: number;
  ipBucket: string;
  requestsLeft: number;
  ipRequestsLeft: number;
  /** Tokens left in the tightest quota window; Infinity without quotas. */
  tokensLeft: number;
}

export interface HeadroomLimits {
  requests: number;
  ipRequests: number;
  maxConcurrent: number;
}

/** A record older than this says too little about what other instances spent since. */
const maxAgeMs = 60_000;
/** Callers remembered; the oldest are forgotten first (they then wait for one admission). */
const capacity = 100_000;

/** Requests that must be left on a rate for one to run beside its check: a tenth of it, at least 2. */
export function requestMargin(limit: number): number {
  return Math.max(2, Math.ceil(limit / 10));
}

export function createAdmissionHeadroom() {
  const records = new BoundedMap<string, Headroom>(capacity);
  const inFlight = new Map<string, number>();

  return {
    /** Redis admitted the caller: what it left on each limit (its answer counts this request already). */
    admitted(userId: string, left: Omit<Headroom, 'at'>, now: number): void {
      records.delete(userId);
      records.set(userId, { ...left, at: now });
    },

    /** Redis refused the caller, or did not decide: nothing runs beside a check until it admits again. */
    withdraw(userId: string): void {
      records.delete(userId);
    },

    /**
     * True when this request's check may run beside vLLM's start. What it may use is counted off
     * the record at once, so a burst stops qualifying before the answers come back.
     */
    claim(input: { userId: string; ipBucket: string; reserveTokens: number; limits: HeadroomLimits; now: number }): boolean {
      const record = records.get(input.userId);
      if (record === undefined || input.now - record.at > maxAgeMs || record.ipBucket !== input.ipBucket) return false;
      // Concurrent generations are not reported by Redis: this instance's own must leave half free.
      if ((inFlight.get(input.userId) ?? 0) + 1 > Math.floor(input.limits.maxConcurrent / 2)) return false;
      if (record.requestsLeft < requestMargin(input.limits.requests)) return false;
      if (record.ipRequestsLeft < requestMargin(input.limits.ipRequests)) return false;
      if (record.tokensLeft < 2 * input.reserveTokens) return false;
      record.requestsLeft -= 1;
      record.ipRequestsLeft -= 1;
      record.tokensLeft -= input.reserveTokens;
      return true;
    },

    /** A generation of this caller is being admitted or runs on this instance. */
    started(userId: string): void {
      inFlight.set(userId, (inFlight.get(userId) ?? 0) + 1);
    },

    ended(userId: string): void {
      const count = (inFlight.get(userId) ?? 1) - 1;
      if (count <= 0) inFlight.delete(userId);
      else inFlight.set(userId, count);
    },
  };
}

export type AdmissionHeadroom = ReturnType<typeof createAdmissionHeadroom>;
