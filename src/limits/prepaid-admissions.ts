// Prepaid admissions: a caller who sends requests one after another is admitted from memory, with
// no Redis round trip on the request's path. Each admission asks Redis to charge the caller's next
// request too (the script grants it only far from every limit), and this instance holds that
// prepaid admission for the caller's next request; a request of a caller coming back asks for
// another when it ends, in the same script call as its own settlement — so no Redis work runs while
// it is served, and what is held does not age through a long stream. Up to two are held per
// caller: a caller that sends its next request the moment the last one ended finds one held, not
// one still on its way from Redis. The limits stay exact: what is used
// was charged in Redis beforehand, and what is not used within its lifetime is given back (a
// prepaid admission held here can make another instance refuse a request early meanwhile; a
// refused request here uses it instead).
//
// A prepaid admission stands for the caller's credential as it was when Redis charged it. Every
// change of a credential or a user is announced on the change feed, which drops every prepaid
// admission here (given back), and one is used only while the feed is current: a change announced
// before the request came is then known to have reached this instance.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { AdmissionRequest, AdmissionResult, AdmissionStanding, Settlement, StoredValuesPrecondition } from '../platform/admission.js';
import { emissionInterval, quotaBucket } from '../platform/admission.js';
import { BoundedMap } from '../platform/bounded-map.js';
import type { ChangeFeed } from '../platform/change-feed.js';
import type { KeyValueStore } from '../platform/key-value-store.js';
import { commandNeverSent } from '../platform/redis-store.js';
import { settleWithRetries } from './settlement-retries.js';

export interface PrepaidAdmission {
  leaseId: string;
  reserveTokens: number;
  /** Where each limit stood after the prepaid charge: the headers of the request that uses it. */
  standing: AdmissionStanding;
  /** Each rate it charged: when its charge wears off (at the latest) and the limit's emission interval. */
  rates: Array<{ key: string; grantTat: number; interval: number }>;
  concurrencyKey: string;
  /** The store entries the caller's credential was judged on: a change of any of them voids it. */
  judgedOn: string[];
  /** performance.now() after which it is given back unused (a monotonic clock: it must not outlive its 60 s lease). */
  expiresAt: number;
}

/** Long enough for a caller's next request to come (a streamed answer takes seconds), short enough that one held for nothing is soon given back. */
export const prepaidLifetimeMs = 5_000;
/**
 * Held or asked for at once, per caller: one for the next request, and one more so that a request
 * sent the moment the last one ended need not wait for the charge that one asked for.
 */
export const prepaidPerCaller = 2;
/** Callers whose last request time this instance remembers (to prepay only for a caller who came back). */
const rememberedCallers = 10_000;

/** What identifies a caller's prepaid admission: the user, the client's IP bucket, and the credential state it was granted under. */
export function prepaidCallerKey(userId: string, ipBucket: string, precondition: StoredValuesPrecondition): string {
  return `${userId}\n${ipBucket}\n${precondition.keys.join('\n')}\n${precondition.values.join('\n')}`;
}

/**
 * The settlement that undoes a prepaid charge, if its lease is still held (so it is applied once).
 * Rates step back only by what has not worn off yet (`rates` empty: none, when that is unknown).
 */
function giveBackSettlement(charge: {
  leaseId: string;
  concurrencyKey: string;
  rates: PrepaidAdmission['rates'];
  quotas: Array<{ bucketKey: string; resetMs: number; reserve: number }>;
}): Settlement {
  return {
    quotas: charge.quotas.map((quota) => ({ bucketKey: quota.bucketKey, delta: -quota.reserve, ttlMs: quota.resetMs + 60_000 })),
    release: { key: charge.concurrencyKey, leaseId: charge.leaseId },
    rewind: { now: Date.now(), rates: charge.rates },
    onlyIfLeased: true,
  };
}

/** The give-back of a prepaid charge asked for in `request` whose answer never came: it applies only if Redis granted it. */
function giveBackAsked(request: AdmissionRequest, leaseId: string): Settlement {
  return giveBackSettlement({
    leaseId,
    concurrencyKey: request.concurrency?.key ?? '',
    // Where the charge ended is unknown: its rates are left to wear off (never handing out more).
    rates: [],
    quotas: request.quotas.map((quota) => ({ ...quotaBucket(quota, request.now), reserve: quota.reserve })),
  });
}

export function createPrepaidAdmissions(options: {
  store: KeyValueStore;
  feed: ChangeFeed;
  onGiveBackFailed: (error: unknown) => void;
  counted: (outcome: 'used' | 'given_back') => void;
}) {
  const { store, feed } = options;
  /** What is held per caller, oldest first (never empty: a caller with none has no entry). */
  const held = new Map<string, PrepaidAdmission[]>();
  /** Prepaid charges asked for and not yet answered, per caller and by lease id: the feed's epoch when each was asked. */
  const asked = new Map<string, Map<string, number>>();
  /** Background asks on their way, by caller, until a request claims one to wait for: each settled once its answer is handled. */
  const answering = new Map<string, Array<Promise<void>>>();
  /** Background asks and give-backs of answers on their way, claimed or not: closing waits for them (the store closes next). */
  const inFlight = new Set<Promise<void>>();
  const track = (work: Promise<void>): void => {
    inFlight.add(work);
    const done = () => inFlight.delete(work);
    work.then(done, done);
  };
  const lastSeen = new BoundedMap<string, number>(rememberedCallers);
  let closed = false;

  /**
   * Sends a give-back, tried again while it fails and its lease lasts (it applies once: only while
   * its lease is held). `settlementNow` builds it for each try, so each steps the rates back as of
   * its own time: a charge that wore off while Redis was away is not given back on top of a caller's
   * new requests.
   */
  function giveBack(settlementNow: () => Settlement): Promise<void> {
    return settleWithRetries(() => store.settle(settlementNow()), options.onGiveBackFailed);
  }

  function giveBackHeld(prepaid: PrepaidAdmission): Promise<void> {
    options.counted('given_back');
    const quotas = prepaid.standing.quotas.map((quota) => ({ bucketKey: quota.bucketKey, resetMs: quota.resetMs, reserve: prepaid.reserveTokens }));
    return giveBack(() => giveBackSettlement({ ...prepaid, quotas }));
  }

  /** Gives back what is held for credentials judged on any of `entries` (every one, for null). */
  async function giveBackJudgedOn(entries: ReadonlySet<string> | null): Promise<void> {
    const voided: PrepaidAdmission[] = [];
    for (const [caller, prepaids] of held) {
      // One caller's are all judged on the same entries (they are part of its key).
      if (entries !== null && !prepaids.some((prepaid) => prepaid.judgedOn.some((entry) => entries.has(entry)))) continue;
      held.delete(caller);
      voided.push(...prepaids);
    }
    await Promise.all(voided.map(giveBackHeld));
  }

  // A change names the entries it touched (access-state's publishChange); a break may have hidden any.
  feed.onChange((message) => void giveBackJudgedOn(message === null ? null : new Set(message.split('\n'))));

  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const [caller, prepaids] of held) {
      const expired = prepaids.filter((prepaid) => prepaid.expiresAt <= now);
      if (expired.length === 0) continue;
      const kept = prepaids.filter((prepaid) => prepaid.expiresAt > now);
      if (kept.length === 0) held.delete(caller);
      else held.set(caller, kept);
      for (const prepaid of expired) void giveBackHeld(prepaid);
    }
  }, prepaidLifetimeMs / 2);
  sweeper.unref();

  const heldFor = (caller: string): number => held.get(caller)?.length ?? 0;

  /** Keeps what Redis answered to a prepay ask, if nothing changed since it was asked; else gives it back. */
  function keepOrGiveBack(caller: string, request: AdmissionRequest & { prepay: { leaseId: string } }, result: AdmissionResult | null): void {
    const epochAsked = finishAsking(caller, request.prepay.leaseId);
    const standing = result?.prepaid ?? null;
    if (standing === null) return;
    const prepaid: PrepaidAdmission = {
      leaseId: request.prepay.leaseId,
      reserveTokens: request.quotas[0]?.reserve ?? 0,
      standing,
      // The script reports ceil(tat − now): one ms less is never later than the charge's real end.
      rates: request.rates.map((rate, index) => ({ key: rate.key, grantTat: request.now + (standing.rates[index]?.resetMs ?? 0) - 1, interval: emissionInterval(rate) })),
      concurrencyKey: request.concurrency?.key ?? '',
      judgedOn: request.precondition?.keys ?? [],
      expiresAt: performance.now() + prepaidLifetimeMs,
    };
    if (closed || epochAsked !== feed.epoch() || heldFor(caller) >= prepaidPerCaller || request.concurrency === null) {
      // Not on the ask's own promise: a request waiting for the ask must not wait for this too.
      track(giveBackHeld(prepaid));
      return;
    }
    const prepaids = held.get(caller);
    if (prepaids === undefined) held.set(caller, [prepaid]);
    else prepaids.push(prepaid);
  }

  /**
   * Marks a prepay ask for the caller and returns its lease id; null when as many as a caller may
   * have are held or asked for already, or the feed is not current.
   */
  function startAsking(caller: string): string | null {
    const askedForCaller = asked.get(caller);
    if (closed || heldFor(caller) + (askedForCaller?.size ?? 0) >= prepaidPerCaller || !feed.isCurrent()) return null;
    const leaseId = randomUUID();
    if (askedForCaller === undefined) asked.set(caller, new Map([[leaseId, feed.epoch()]]));
    else askedForCaller.set(leaseId, feed.epoch());
    return leaseId;
  }

  /** Ends a prepay ask (answered, refused or lost); returns the feed's epoch when it was asked. */
  function finishAsking(caller: string, leaseId: string): number | undefined {
    const askedForCaller = asked.get(caller);
    const epochAsked = askedForCaller?.get(leaseId);
    askedForCaller?.delete(leaseId);
    if (askedForCaller?.size === 0) asked.delete(caller);
    return epochAsked;
  }

  /** Remembers when the caller was last seen (latest last, so the oldest is forgotten first). */
  function noteSeen(caller: string, now: number): void {
    lastSeen.delete(caller);
    lastSeen.set(caller, now);
  }

  /** Asks Redis to charge the caller's next request alone (a request of a caller coming back has ended). */
  function prepayNext(caller: string, request: AdmissionRequest): void {
    const leaseId = startAsking(caller);
    if (leaseId === null) return;
    const prepayRequest = { ...request, prepay: { leaseId, alone: true } };
    const handled = store.admit(prepayRequest).then(
      (result) => keepOrGiveBack(caller, prepayRequest, result),
      (error: unknown) => {
        finishAsking(caller, leaseId);
        // Refused before it was written (Redis down): nothing was charged, nothing to give back.
        if (!commandNeverSent(error)) track(giveBack(() => giveBackAsked(prepayRequest, leaseId)));
      },
    );
    const pending = answering.get(caller);
    if (pending === undefined) answering.set(caller, [handled]);
    else pending.push(handled);
    track(handled);
    void handled.finally(() => {
      const still = answering.get(caller)?.filter((each) => each !== handled) ?? [];
      if (still.length > 0) answering.set(caller, still);
      else answering.delete(caller);
    });
  }

  return {
    /**
     * The oldest of the caller's prepaid admissions that a request with the limits in `request` may
     * use; null when there is none this instance may use now. One charged in another minute's or
     * day's quota window, for a smaller reservation than this request's (the quota must count what
     * this one may use), or past its lifetime, is given back on the way.
     */
    take(caller: string, request: AdmissionRequest): PrepaidAdmission | null {
      const prepaids = held.get(caller);
      if (prepaids === undefined || !feed.isCurrent()) return null;
      const now = performance.now();
      for (let prepaid = prepaids.shift(); prepaid !== undefined; prepaid = prepaids.shift()) {
        if (prepaids.length === 0) held.delete(caller);
        const fits = request.quotas.every(
          (quota, index) => quotaBucket(quota, request.now).bucketKey === prepaid.standing.quotas[index]?.bucketKey && quota.reserve <= prepaid.reserveTokens,
        );
        if (prepaid.expiresAt <= now || !fits) {
          void giveBackHeld(prepaid);
          continue;
        }
        options.counted('used');
        noteSeen(caller, request.now);
        return prepaid;
      }
      return null;
    },
    /**
     * The prepay to ask for with this caller's admission, or null: only while the feed is current,
     * for a caller whose last request started or ended within a prepaid admission's lifetime, while
     * fewer than `prepaidPerCaller` are held or asked for.
     */
    prepayFor(caller: string, now: number): AdmissionRequest['prepay'] {
      const previous = lastSeen.get(caller);
      noteSeen(caller, now);
      if (previous === undefined || now - previous > prepaidLifetimeMs) return null;
      const leaseId = startAsking(caller);
      return leaseId === null ? null : { leaseId, alone: false };
    },

    /** Hands over Redis's answer to an admission that asked for a prepay; null when it was not answered by Redis in time. */
    answered(caller: string, request: AdmissionRequest, result: AdmissionResult | null): void {
      const prepay = request.prepay;
      if (prepay == null) return;
      keepOrGiveBack(caller, { ...request, prepay }, result);
    },

    /** Gives back what Redis may have granted to a prepay whose answer was given up on or lost. */
    giveBackUnanswered(request: AdmissionRequest): void {
      const prepay = request.prepay;
      if (prepay != null) void giveBack(() => giveBackAsked(request, prepay.leaseId));
    },

    /**
     * A caller's request ended (`request` as it was admitted, its `now` the end). The caller counts as
     * coming back from now on, however long it ran (a stream). If the request was admitted on a
     * prepaid admission, or was granted one with its own admission (`keepPrepaying`: Redis charges
     * them only far from every limit), another is asked for now, in the same turn as its settlement,
     * while fewer than `prepaidPerCaller` are held or on their way.
     */
    ended(caller: string, request: AdmissionRequest, keepPrepaying: boolean): void {
      noteSeen(caller, request.now);
      if (keepPrepaying) prepayNext(caller, request);
    },

    prepayNext,

    /**
     * The caller's background ask still on its way, for a request that came before its answer (a
     * caller sending back to back) to wait for instead of asking Redis itself. One request claims
     * it: a busy caller's other requests ask Redis at once, as they would anyway.
     */
    claimAnswering(caller: string): Promise<void> | null {
      const pending = answering.get(caller);
      // Not while the feed is not current: what the answer brings could not be used.
      if (pending === undefined || !feed.isCurrent()) return null;
      const claimed = pending.shift() ?? null;
      if (pending.length === 0) answering.delete(caller);
      return claimed;
    },

    /**
     * Gives back every prepaid admission held here and, once answered, every one still on its way
     * (at shutdown, before the store closes: one answered after it could not be given back).
     */
    async close(): Promise<void> {
      closed = true;
      clearInterval(sweeper);
      // An answer handled meanwhile may start a give-back: wait until none is left.
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
      await giveBackJudgedOn(null);
    },
  };
}

export type PrepaidAdmissions = ReturnType<typeof createPrepaidAdmissions>;
