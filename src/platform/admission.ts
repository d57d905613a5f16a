// Admission control as one atomic step over shared counters: request rates (GCRA, so no double
// burst at a window's edge), token quotas (a fixed window per minute or day, with a reservation
// settled later) and concurrency leases (which expire on their own if an instance dies). All
// checks pass or nothing is consumed. This file holds the types and the in-memory algorithm; the
// Redis store runs the same algorithm as a Lua script (admission-script.ts), one round trip.

export interface RateCheck {
  key: string;
  limit: number;
  windowMs: number;
}

export interface QuotaCheck {
  /** The counter's key; the window's index is appended, so each minute or day has its own. */
  key: string;
  limit: number;
  windowMs: number;
  reserve: number;
}

export interface ConcurrencyCheck {
  key: string;
  limit: number;
  leaseId: string;
  leaseTtlMs: number;
}

/**
 * Plain keys that must still hold exactly these values (null: absent) for the admission to be
 * tried at all. The caller's credential checks ride on the admission this way: one round trip.
 */
export interface StoredValuesPrecondition {
  keys: string[];
  values: Array<string | null>;
}

/**
 * Charges the caller's next request in advance, so this instance can admit it without asking the
 * store (limits-service's prepaid admissions). Granted only while the caller stays far from every
 * limit after the charge: a tenth of each rate and quota left, at most half the concurrency cap in
 * use. `alone`: only the prepaid one is charged, not a request of its own.
 */
export interface PrepayRequest {
  leaseId: string;
  alone: boolean;
}

export interface AdmissionRequest {
  now: number;
  rates: RateCheck[];
  quotas: QuotaCheck[];
  concurrency: ConcurrencyCheck | null;
  /** When set and any value differs, nothing is checked or consumed: the failure is `precondition`. */
  precondition?: StoredValuesPrecondition | null;
  /** With `alone`, `allowed` says whether the prepaid admission was granted (no failure when not). */
  prepay?: PrepayRequest | null;
}

export type AdmissionFailure =
  | { kind: 'rate' | 'quota'; index: number; retryAfterMs: number }
  | { kind: 'concurrency'; index: 0; retryAfterMs: number }
  | { kind: 'precondition'; index: 0; retryAfterMs: 0 };

/** The failure of an admission whose precondition did not hold: nothing was consumed. */
export const preconditionFailed: AdmissionResult = { allowed: false, failure: { kind: 'precondition', index: 0, retryAfterMs: 0 }, rates: [], quotas: [] };

export interface AdmissionResult {
  allowed: boolean;
  failure: AdmissionFailure | null;
  /** Per rate check: requests left, and ms until the window is whole again. */
  rates: Array<{ remaining: number; resetMs: number }>;
  /** Per quota check: tokens used in the current window (the reservation included), ms to its end, and the counter's key. */
  quotas: Array<{ used: number; resetMs: number; bucketKey: string }>;
  /** The prepaid next request, when one was asked for and granted: where each limit stands after it. */
  prepaid?: AdmissionStanding | null;
}

export interface AdmissionStanding {
  rates: AdmissionResult['rates'];
  quotas: AdmissionResult['quotas'];
}

/** How much of a limit must be left after a prepaid charge (a tenth): near a limit every request asks the store. */
export function prepaidMargin(limit: number): number {
  return Math.ceil(limit / 10);
}

/** Concurrency slots a caller may use, the prepaid one included, for a prepaid admission to be granted. */
export function prepaidConcurrencyRoom(limit: number): number {
  return Math.floor(limit / 2);
}

export interface Settlement {
  /** Token counters to correct: the reservation replaced by the real usage. */
  quotas: Array<{ bucketKey: string; delta: number; ttlMs: number }>;
  release: { key: string; leaseId: string } | null;
  /**
   * A prepaid admission given back unused: each rate it charged steps back by the part of its charge
   * not yet worn off at `now` (the charge ended at `grantTat`), under the limit it was charged at.
   */
  rewind?: { now: number; rates: Array<{ key: string; grantTat: number; interval: number }> };
  /**
   * Apply it only if the lease is still held — that is, only if the admission it settles ran and
   * granted. For an admission whose answer was lost: sent after it, it finds out which it was.
   */
  onlyIfLeased?: boolean;
}

export function quotaBucket(check: { key: string; windowMs: number }, now: number): { bucketKey: string; resetMs: number } {
  const index = Math.floor(now / check.windowMs);
  return { bucketKey: `${check.key}:${index}`, resetMs: (index + 1) * check.windowMs - now };
}

/** Emission interval of a GCRA limit: one request every windowMs / limit. */
export function emissionInterval(check: RateCheck): number {
  return check.windowMs / check.limit;
}

/**
 * The theoretical arrival time to judge a request by. A state stored under another limit (an
 * administrator changed it) is rescaled to the new rate, so the share already used carries over
 * and a raised limit lets the user through at once.
 */
export function currentTat(stored: { tat: number; interval: number } | null, interval: number, now: number): number {
  if (stored === null) return now;
  let tat = stored.tat;
  if (stored.interval !== interval && tat > now) tat = now + ((tat - now) * interval) / stored.interval;
  return Math.max(tat, now);
}

/** Rate state as Redis keeps it: "<tat> <interval>". */
export function parseRateState(value: string | null | undefined): { tat: number; interval: number } | null {
  if (value == null) return null;
  const [tat, interval] = value.split(' ').map(Number);
  return tat === undefined || interval === undefined || !Number.isFinite(tat) || !Number.isFinite(interval) ? null : { tat, interval };
}

export interface AdmissionState {
  rateTat: Map<string, { tat: number; interval: number; expiresAt: number }>;
  counters: Map<string, { value: number; expiresAt: number }>;
  leases: Map<string, Map<string, number>>;
}

export function createAdmissionState(): AdmissionState {
  return { rateTat: new Map(), counters: new Map(), leases: new Map() };
}

/** The in-memory twin of the Lua script: synchronous, hence atomic within one process. */
export function admitInMemory(state: AdmissionState, request: AdmissionRequest): AdmissionResult {
  const { now } = request;
  const prepay = request.prepay ?? null;
  // A request of its own is charged unless only a prepaid one was asked for.
  const charged = prepay === null || !prepay.alone;
  const tats: number[] = [];
  const rates: AdmissionResult['rates'] = [];
  for (const [index, check] of request.rates.entries()) {
    const interval = emissionInterval(check);
    const stored = state.rateTat.get(check.key);
    let tat = currentTat(stored !== undefined && stored.expiresAt > now ? stored : null, interval, now);
    if (charged) {
      tat += interval;
      const allowAt = tat - check.windowMs;
      if (allowAt > now) return { allowed: false, failure: { kind: 'rate', index, retryAfterMs: Math.ceil(allowAt - now) }, rates: [], quotas: [] };
      rates.push(rateStanding(check, tat, now));
    }
    tats.push(tat);
  }

  const buckets = request.quotas.map((check) => quotaBucket(check, now));
  const used: number[] = [];
  for (const [index, check] of request.quotas.entries()) {
    const { bucketKey, resetMs } = buckets[index]!;
    const counter = state.counters.get(bucketKey);
    const value = counter !== undefined && counter.expiresAt > now ? counter.value : 0;
    if (charged && value >= check.limit) return { allowed: false, failure: { kind: 'quota', index, retryAfterMs: resetMs }, rates: [], quotas: [] };
    used.push(charged ? value + check.reserve : value);
  }

  let leases: Map<string, number> | null = null;
  if (request.concurrency !== null) {
    leases = state.leases.get(request.concurrency.key) ?? new Map<string, number>();
    for (const [leaseId, expiresAt] of leases) if (expiresAt <= now) leases.delete(leaseId);
    if (charged && leases.size >= request.concurrency.limit) {
      const soonest = Math.min(...leases.values());
      return { allowed: false, failure: { kind: 'concurrency', index: 0, retryAfterMs: Math.max(1000, soonest - now) }, rates: [], quotas: [] };
    }
  }
  const quotaStanding = (): AdmissionResult['quotas'] => buckets.map((bucket, index) => ({ used: used[index] ?? 0, ...bucket }));
  const quotas = quotaStanding();

  const concurrency = request.concurrency;
  const leasesInUse = (leases?.size ?? 0) + (charged ? 1 : 0);
  const prepaidGranted =
    prepay !== null &&
    concurrency !== null &&
    leasesInUse + 1 <= prepaidConcurrencyRoom(concurrency.limit) &&
    request.rates.every((check, index) => rateStanding(check, (tats[index] ?? now) + emissionInterval(check), now).remaining >= prepaidMargin(check.limit)) &&
    request.quotas.every((check, index) => (used[index] ?? 0) + check.reserve + prepaidMargin(check.limit) <= check.limit);
  if (!charged && !prepaidGranted) return { allowed: false, failure: null, rates: [], quotas: [], prepaid: null };

  let prepaid: AdmissionStanding | null = null;
  if (prepaidGranted) {
    for (const [index, check] of request.rates.entries()) tats[index] = (tats[index] ?? now) + emissionInterval(check);
    for (const [index, check] of request.quotas.entries()) used[index] = (used[index] ?? 0) + check.reserve;
    prepaid = {
      rates: request.rates.map((check, index) => rateStanding(check, tats[index] ?? now, now)),
      quotas: quotaStanding(),
    };
  }
  if (concurrency !== null && leases !== null) {
    if (charged) leases.set(concurrency.leaseId, now + concurrency.leaseTtlMs);
    if (prepay !== null && prepaidGranted) leases.set(prepay.leaseId, now + concurrency.leaseTtlMs);
    state.leases.set(concurrency.key, leases);
  }
  for (const [index, check] of request.rates.entries()) {
    state.rateTat.set(check.key, { tat: tats[index] ?? now, interval: emissionInterval(check), expiresAt: now + check.windowMs });
  }
  for (const [index, { bucketKey, resetMs }] of buckets.entries()) state.counters.set(bucketKey, { value: used[index] ?? 0, expiresAt: now + resetMs + 60_000 });
  if (!charged) return { allowed: true, failure: null, rates: [], quotas: [], prepaid };
  return { allowed: true, failure: null, rates, quotas, ...(prepay === null ? {} : { prepaid }) };
}

export function settleInMemory(state: AdmissionState, settlement: Settlement, now: number): void {
  if (settlement.onlyIfLeased === true) {
    const expiresAt = settlement.release === null ? undefined : state.leases.get(settlement.release.key)?.get(settlement.release.leaseId);
    // Still listed, even if lapsed since: the admission granted, so its reservation is settled.
    if (expiresAt === undefined) return;
  }
  for (const quota of settlement.quotas) {
    const counter = state.counters.get(quota.bucketKey);
    if (counter === undefined || counter.expiresAt <= now) continue;
    counter.value = Math.max(0, counter.value + quota.delta);
  }
  if (settlement.release !== null) state.leases.get(settlement.release.key)?.delete(settlement.release.leaseId);
  const { now: givenBackAt, rates } = settlement.rewind ?? { now: 0, rates: [] };
  for (const rate of rates) {
    const stored = state.rateTat.get(rate.key);
    if (stored === undefined || stored.interval !== rate.interval || rate.grantTat <= givenBackAt) continue;
    stored.tat = Math.max(givenBackAt, stored.tat - Math.min(rate.interval, rate.grantTat - givenBackAt));
  }
}

export function renewLeaseInMemory(state: AdmissionState, lease: { key: string; leaseId: string; ttlMs: number }, now: number): void {
  const leases = state.leases.get(lease.key);
  if (leases?.has(lease.leaseId) === true) leases.set(lease.leaseId, now + lease.ttlMs);
}

/** Reads counters without consuming anything (for /api/me/usage). */
export function peekInMemory(state: AdmissionState, request: { now: number; rates: RateCheck[]; quotas: Array<Omit<QuotaCheck, 'reserve'>> }) {
  return {
    rates: request.rates.map((check) => {
      const stored = state.rateTat.get(check.key);
      return rateStanding(check, currentTat(stored !== undefined && stored.expiresAt > request.now ? stored : null, emissionInterval(check), request.now), request.now);
    }),
    quotas: request.quotas.map((check) => {
      const { bucketKey, resetMs } = quotaBucket(check, request.now);
      const counter = state.counters.get(bucketKey);
      return { used: counter !== undefined && counter.expiresAt > request.now ? counter.value : 0, resetMs };
    }),
  };
}

/** Requests left and time until the window is whole again, for a given theoretical arrival time. */
export function rateStanding(check: RateCheck, tat: number, now: number): { remaining: number; resetMs: number } {
  const interval = emissionInterval(check);
  return { remaining: Math.max(0, Math.min(check.limit, Math.floor((now + check.windowMs - tat) / interval))), resetMs: Math.ceil(tat - now) };
}

/** Drops expired entries so memory stays bounded by live keys. */
export function sweepAdmissionState(state: AdmissionState, now: number): void {
  for (const [key, entry] of state.rateTat) if (entry.expiresAt <= now) state.rateTat.delete(key);
  for (const [key, entry] of state.counters) if (entry.expiresAt <= now) state.counters.delete(key);
  for (const [key, leases] of state.leases) {
    for (const [leaseId, expiresAt] of leases) if (expiresAt <= now) leases.delete(leaseId);
    if (leases.size === 0) state.leases.delete(key);
  }
}
