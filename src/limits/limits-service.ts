// Fair shares that hold across every instance: per-user and per-IP request rates, per-user token
// quotas (reserved up front, settled with vLLM's real usage) and a per-user cap on simultaneous
// generations — all checked in one atomic round trip to the shared store. When Redis does not
// answer within tens of milliseconds, this instance keeps limiting on its own memory and says so
// in a metric; requests are never let through unlimited.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Principal } from '../auth/authenticate.js';
import type { Config } from '../config.js';
import { GatewayError } from '../errors.js';
import { quotaBucket, type AdmissionRequest, type AdmissionResult, type AdmissionStanding, type QuotaCheck, type RateCheck, type StoredValuesPrecondition } from '../platform/admission.js';
import type { KeyValueStore } from '../platform/key-value-store.js';
import { createMemoryStore } from '../platform/memory-store.js';
import { commandNeverSent } from '../platform/redis-store.js';
import type { ChangeFeed } from '../platform/change-feed.js';
import { effectiveLimits, ipBucket, type EffectiveLimits } from './effective-limits.js';
import { createPrepaidAdmissions, prepaidCallerKey } from './prepaid-admissions.js';
import { limitHeaders, requestRateHeaders, retryAfterSeconds } from './limit-headers.js';
import { settleWithRetries } from './settlement-retries.js';

const minuteMs = 60_000;
const dayMs = 86_400_000;
const leaseTtlMs = 60_000;
const leaseRenewMs = 20_000;
const fallbackLogIntervalMs = 10_000;

/** Wraps a log call so it runs at most once per fallbackLogIntervalMs: such failures come in bursts. */
function oncePerInterval(log: (error: unknown) => void): (error: unknown) => void {
  let lastAt = -Infinity;
  return (error) => {
    const now = Date.now();
    if (now - lastAt < fallbackLogIntervalMs) return;
    lastAt = now;
    log(error);
  };
}

/** Whether `pending` settles within `timeoutMs`. */
function settlesWithin(pending: Promise<void>, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    void pending.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** What an admission charged: its lease, its token reservation, and the quota buckets it went into. */
interface Grant {
  leaseId: string;
  reserveTokens: number;
  standing: Pick<AdmissionStanding, 'quotas'>;
}

export interface Admission {
  headers: Record<string, string>;
  /** Settles the token reservation with the real usage (null: nothing was generated) and frees the slot. Idempotent. */
  finish(usage: { prompt_tokens: number; completion_tokens: number } | null): Promise<void>;
}

export function createLimitsService(dependencies: {
  config: Config['limits'];
  store: KeyValueStore;
  registry: Registry;
  logger: Logger;
  /** Announced changes of credentials and users; with Redis, it lets callers coming back be admitted from memory (prepaid-admissions.ts). */
  changeFeed?: ChangeFeed | null;
}) {
  const { config, store, logger } = dependencies;
  const fallback = createMemoryStore();
  const registers = [dependencies.registry];
  const rejections = new Counter({ name: 'rate_limit_rejections_total', help: 'Requests refused by a limit, by reason.', labelNames: ['reason'], registers });
  const fallbacks = new Counter({ name: 'rate_limit_store_fallback_total', help: 'Limit checks decided by this instance alone because Redis did not answer.', registers });
  // Once per interval, not once per request: a burst while Redis is slow would flood the log.
  const fallbackStarted = oncePerInterval((error) =>
    logger.warn({ err: error }, 'limits: Redis unavailable, limiting on this instance alone (rate_limit_store_fallback_total counts each check)'),
  );
  const giveBackFailed = oncePerInterval((error) =>
    logger.warn({ err: error }, 'limits: a check Redis answered late, or never, could not be settled there; its slot lapses within 60 s, its reservation stays charged'),
  );
  const prepaidAdmissions = new Counter({
    name: 'rate_limit_prepaid_admissions_total',
    help: 'Prepaid admissions (charged in Redis with an earlier request), by outcome: used by a request without a Redis round trip, or given back unused.',
    labelNames: ['outcome'],
    registers,
  });
  const changeFeed = dependencies.changeFeed ?? null;
  new Gauge({
    name: 'rate_limit_prepaid_feed_current',
    help: '1 while this instance may admit callers on prepaid admissions: its change feed has proved, within the trust window, that it has heard every change (0 with Redis unreachable or prepaid admissions off).',
    registers,
    collect() {
      this.set(prepaid !== null && changeFeed?.isCurrent() === true ? 1 : 0);
    },
  });
  const prepaid =
    store.kind === 'redis' && changeFeed !== null
      ? createPrepaidAdmissions({ store, feed: changeFeed, onGiveBackFailed: giveBackFailed, counted: (outcome) => prepaidAdmissions.inc({ outcome }) })
      : null;
  /** Set while Redis misses the timeout: a precondition cannot hold on the fallback, so none is tried. */
  let storeDegraded = false;
  const fallbackActive = new Gauge({ name: 'rate_limit_store_fallback_active', help: '1 while limit checks run on this instance\'s memory (Redis unreachable).', registers });

  /**
   * Runs an operation on the shared store, or on this instance's memory when the store fails or is
   * slow. A late answer from Redis is handed to `undoLate`, so a check we stopped waiting for leaves
   * no slot or reservation behind there; when none ever comes (the connection's own timeout ran out,
   * or it broke), `onLost` is called instead, without knowing whether Redis ran it. `unanswered`:
   * decided on the fallback because Redis's answer had not come in time (it may still come).
   */
  async function onStore<T>(
    operation: (target: KeyValueStore) => Promise<T>,
    undoLate?: (lateValue: T) => Promise<void>,
    onLost?: () => void,
  ): Promise<{ value: T; target: KeyValueStore; unanswered: boolean }> {
    if (store.kind === 'memory') return { value: await operation(store), target: store, unanswered: false };
    let timer: NodeJS.Timeout | undefined;
    let gaveUp = false;
    let timedOut = false;
    const attempt = operation(store);
    try {
      const value = await Promise.race([
        attempt,
        new Promise<never>((_, reject) => {
          // Timers run before pending I/O in a turn of the event loop: on a busy instance Redis's
          // answer may already be waiting in the socket. setImmediate lets it be read first, so
          // only a Redis that really did not answer in time counts as unavailable.
          const giveUp = () => {
            timedOut = true;
            reject(new Error(`no answer within ${config.storeTimeoutMs} ms`));
          };
          timer = setTimeout(() => setImmediate(giveUp), config.storeTimeoutMs);
        }),
      ]);
      fallbackActive.set(0);
      storeDegraded = false;
      return { value, target: store, unanswered: false };
    } catch (error) {
      gaveUp = true;
      storeDegraded = true;
      fallbacks.inc();
      fallbackActive.set(1);
      fallbackStarted(error);
      return { value: await operation(fallback), target: fallback, unanswered: timedOut };
    } finally {
      clearTimeout(timer);
      if (gaveUp && undoLate !== undefined) {
        attempt.then(
          (late) => undoLate(late).catch(giveBackFailed),
          (error: unknown) => {
            // Refused before it was written (Redis down): nothing ran there, nothing to settle.
            if (!commandNeverSent(error)) onLost?.();
          },
        );
      }
    }
  }

  function refuse(result: AdmissionResult, reasons: { rate: string[]; quota: string[] }, headers: Record<string, string>): never {
    const failure = result.failure;
    const retryAfter = String(retryAfterSeconds(failure?.retryAfterMs ?? 1000));
    let code: 'rate_limited' | 'quota_exceeded' | 'too_many_concurrent' = 'rate_limited';
    let message = 'Too many requests; retry later';
    let reason = 'rate';
    if (failure?.kind === 'rate') reason = reasons.rate[failure.index] ?? 'rate';
    if (failure?.kind === 'quota') {
      code = 'quota_exceeded';
      reason = reasons.quota[failure.index] ?? 'quota';
      message = `Token quota (${reason.replace('tokens_', 'per ')}) is used up; it renews in ${retryAfter} s`;
    }
    if (failure?.kind === 'concurrency') {
      code = 'too_many_concurrent';
      reason = 'concurrency';
      message = 'Too many generations at once; wait for one to finish';
    }
    rejections.inc({ reason });
    throw new GatewayError(code, message, { headers: { ...headers, 'retry-after': retryAfter } });
  }

  return {
    limitsFor(principal: Principal): EffectiveLimits {
      return effectiveLimits({ config, role: principal.role, overrides: principal.limits });
    },

    /**
     * Admits a generation request, or throws 429 with the reason and Retry-After. With a
     * precondition (the caller's credential state as last judged), resolves null when the store
     * no longer holds those values: nothing was consumed, and the credential must be checked again.
     */
    async admitGeneration(input: { principal: Principal; ip: string; reserveTokens: number; precondition?: StoredValuesPrecondition | null }): Promise<Admission | null> {
      // While Redis is slow the admission would end on this instance's memory, where the
      // precondition never holds — and Redis's late answer would still charge the rates: the
      // credential is checked in full first instead.
      if (input.precondition != null && storeDegraded) return null;
      const limits = this.limitsFor(input.principal);
      const userId = input.principal.userId;
      const clientBucket = ipBucket(input.ip);
      const rates: RateCheck[] = [
        { key: `limit:user:${userId}`, limit: limits.requests, windowMs: limits.windowSeconds * 1000 },
        { key: `limit:ip:${clientBucket}`, limit: config.ipRequests, windowMs: config.ipWindowSeconds * 1000 },
      ];
      const quotas: QuotaCheck[] = [];
      const quotaNames: string[] = [];
      if (limits.tokensPerMinute > 0) {
        quotas.push({ key: `quota:minute:${userId}`, limit: limits.tokensPerMinute, windowMs: minuteMs, reserve: input.reserveTokens });
        quotaNames.push('tokens_minute');
      }
      if (limits.tokensPerDay > 0) {
        quotas.push({ key: `quota:day:${userId}`, limit: limits.tokensPerDay, windowMs: dayMs, reserve: input.reserveTokens });
        quotaNames.push('tokens_day');
      }
      const leaseId = randomUUID();
      const concurrency = { key: `concurrency:${userId}`, limit: limits.maxConcurrentStreams, leaseId, leaseTtlMs: leaseTtlMs };
      const request: AdmissionRequest = { now: Date.now(), rates, quotas, concurrency, precondition: input.precondition ?? null };
      const quotaLimits = quotas.map((quota) => quota.limit);

      // What Redis decided while this instance decided alone — an answer that came late, or none at
      // all — is settled there with the generation's real usage: at once if it is over, else when it ends.
      let finishedWith: number | null = null;
      let settleInRedis: ((used: number) => Promise<void>) | null = null;
      const whenFinished = (settle: (used: number) => Promise<void>): void => {
        if (finishedWith === null) settleInRedis = settle;
        else void settle(finishedWith).catch(giveBackFailed);
      };
      const finishInRedis = async (used: number): Promise<void> => {
        finishedWith = used;
        const settle: ((used: number) => Promise<void>) | null = settleInRedis;
        if (settle !== null) await settle(used).catch(giveBackFailed);
      };
      /** Replaces a grant's reservation with the real usage and frees its slot (only while its lease is held, with onlyIfLeased). */
      const settleOn = (where: KeyValueStore, grant: Grant, used: number, onlyIfLeased = false) =>
        where.settle({
          quotas: grant.standing.quotas.map((quota) => ({ bucketKey: quota.bucketKey, delta: used - grant.reserveTokens, ttlMs: quota.resetMs + 60_000 })),
          release: { key: concurrency.key, leaseId: grant.leaseId },
          onlyIfLeased,
        });
      /** This request's own admission, as Redis or this instance's memory charged it. */
      const ownGrant = (standing: Pick<AdmissionStanding, 'quotas'>): Grant => ({ leaseId, reserveTokens: input.reserveTokens, standing });
      // Who may be admitted on a prepaid admission: a caller whose credential this instance judged before.
      const caller = prepaid !== null && request.precondition != null ? prepaidCallerKey(userId, clientBucket, request.precondition) : null;
      /**
       * The admission granted on `target`: headers from where the limits stand, a kept-alive lease, and
       * its settlement — issued in the same turn as what the prepaid admissions ask of Redis when a
       * request ends, so both go in one script call. `comingBack`: admitted on a prepaid admission, or
       * granted one with its own admission — another is asked for when it ends.
       */
      const admitted = (target: KeyValueStore, grant: Grant & { standing: AdmissionStanding }, comingBack = false): Admission => {
        // A long stream keeps its slot; a dead instance's slot lapses within leaseTtlMs. Decided on
        // this instance's memory, it also keeps alive the lease Redis granted late or may have granted
        // unanswered, so it is still there to settle when the stream ends (a renewal touches only a
        // lease that is there).
        const lease = { key: concurrency.key, leaseId: grant.leaseId, ttlMs: leaseTtlMs };
        const renewal = setInterval(() => {
          void target.renewLease(lease).catch(() => undefined);
          if (target !== store) void store.renewLease(lease).catch(() => undefined);
        }, leaseRenewMs);
        renewal.unref();
        let finished = false;
        return {
          headers: limitHeaders({ limits, rates: grant.standing.rates, quotas: grant.standing.quotas, quotaLimits }),
          async finish(usage) {
            if (finished) return;
            finished = true;
            clearInterval(renewal);
            const used = usage === null ? 0 : usage.prompt_tokens + usage.completion_tokens;
            try {
              const settling = settleOn(target, grant, used);
              if (prepaid !== null && caller !== null) prepaid.ended(caller, { ...request, now: Date.now() }, comingBack);
              await settling;
            } catch (error) {
              logger.warn({ err: error }, 'limits: settlement failed; the lease expires on its own');
            }
            await finishInRedis(used);
          },
        };
      };

      // A caller coming back is admitted on the prepaid admission held for it, without asking Redis;
      // one whose charge is still on its way (asked when the caller's last request ended) is waited
      // for, as long as Redis is given to answer. A coming-back caller's request asks for another
      // when it ends (up to two held per caller).
      if (prepaid !== null && caller !== null) {
        let held = prepaid.take(caller, request);
        const answering = held === null ? prepaid.claimAnswering(caller) : null;
        if (answering !== null) {
          if (await settlesWithin(answering, config.storeTimeoutMs)) held = prepaid.take(caller, request);
          // A charge Redis did not answer within the limits timeout says what a timed-out check says.
          else storeDegraded = true;
        }
        if (held !== null) return admitted(store, held, true);
        if (input.precondition != null && storeDegraded) return null;
        request.prepay = prepaid.prepayFor(caller, request.now);
      }

      // A late answer that admitted is settled like the real one, so Redis counts the tokens actually
      // used and holds no slot for a generation that is over. What it granted was given back at once
      // below when this instance refused (and a prepaid charge always): then this applies only if that
      // give-back did not (its lease still held).
      let givenBackAtOnce = false;
      const onLate = async (late: AdmissionResult) => {
        if (late.allowed) whenFinished((used) => settleOn(store, ownGrant(late), used, givenBackAtOnce));
      };
      // No answer at all: whether Redis admitted is unknown, so the settlement applies only if it did
      // (its lease is there). After a timeout it goes on the same connection as the check, so Redis
      // runs it after the check. Lost to a broken connection, it fails at once too (nothing is queued
      // while ioredis reconnects) and is tried again, with growing waits, while its lease lasts.
      const settleIfGranted = (used: number) => settleOn(store, ownGrant({ quotas: quotas.map((quota) => ({ used: 0, ...quotaBucket(quota, request.now) })) }), used, true);
      const onLost = () => {
        prepaid?.giveBackUnanswered(request);
        whenFinished((used) => settleWithRetries(() => settleIfGranted(used), giveBackFailed));
      };
      // This instance's memory decides alone only while Redis is slow: it prepays nothing.
      let decided: { value: AdmissionResult; target: KeyValueStore; unanswered: boolean } | null = null;
      try {
        decided = await onStore((chosen) => chosen.admit(chosen === store ? request : { ...request, prepay: null }), onLate, onLost);
      } finally {
        // Only Redis's own answer in time can hand over a prepaid admission (a late one gives it back).
        if (prepaid !== null && caller !== null) prepaid.answered(caller, request, decided?.target === store ? decided.value : null);
      }
      const { value: result, target, unanswered } = decided;
      // Decided here while Redis's answer is still on its way: what Redis grants is given back at once,
      // by settlements that apply only if it granted, sent now on the check's connection so Redis runs
      // them right after the check — before whatever this request sends next. The admission that
      // follows a failed precondition would otherwise find this check's slot and reservation still
      // held (a 429 for a caller with no generation running, at one stream). A prepaid charge is never
      // used late. The late or lost answer still settles if these fail.
      if (unanswered) prepaid?.giveBackUnanswered(request);
      if (!result.allowed) {
        if (unanswered) {
          givenBackAtOnce = true;
          void settleIfGranted(0).catch(() => undefined);
        }
        await finishInRedis(0);
      }
      if (result.failure?.kind === 'precondition') return null;
      if (!result.allowed) {
        // Refused by Redis while a prepaid admission for this caller is held here (requests that came
        // together): that one was charged for exactly such a request.
        const held = prepaid !== null && caller !== null && target === store ? prepaid.take(caller, request) : null;
        if (held !== null) return admitted(store, held);
        // A refusal consumed nothing and reported nothing: read where each limit stands for the headers.
        const standing = await target.peek({ now: request.now, rates, quotas }).catch(() => ({ rates: [], quotas: [] }));
        const failed = result.failure;
        const rateStandings = rates.map((_, index) =>
          failed?.kind === 'rate' && failed.index === index ? { remaining: 0, resetMs: failed.retryAfterMs } : (standing.rates[index] ?? { remaining: 0, resetMs: 0 }),
        );
        const quotaStandings = quotas.map((quota, index) => standing.quotas[index] ?? { used: quota.limit, resetMs: 0 });
        const headers = limitHeaders({ limits, rates: rateStandings, quotas: quotaStandings, quotaLimits });
        refuse(result, { rate: ['user_requests', 'ip_requests'], quota: quotaNames }, headers);
      }
      // A prepaid charge Redis refused (near a limit) is not asked for again when this one ends.
      return admitted(target, { ...ownGrant(result), standing: result }, target === store && result.prepaid != null);
    },

    /** The stricter per-IP limit on login, register and refresh; returns the headers for the answer. */
    async admitAuth(ip: string): Promise<Record<string, string>> {
      const rate: RateCheck = { key: `limit:auth-ip:${ipBucket(ip)}`, limit: config.authRequests, windowMs: config.authWindowSeconds * 1000 };
      const { value: result } = await onStore((chosen) => chosen.admit({ now: Date.now(), rates: [rate], quotas: [], concurrency: null }));
      const standing = result.allowed ? (result.rates[0] ?? { remaining: 0, resetMs: 0 }) : { remaining: 0, resetMs: result.failure?.retryAfterMs ?? 1000 };
      const headers = requestRateHeaders(config.authRequests, standing);
      if (!result.allowed) refuse(result, { rate: ['auth_ip_requests'], quota: [] }, headers);
      return headers;
    },

    /** What is used and left right now, without consuming anything (for /api/me/usage). */
    async snapshot(principal: Principal) {
      const limits = this.limitsFor(principal);
      const now = Date.now();
      const rate: RateCheck = { key: `limit:user:${principal.userId}`, limit: limits.requests, windowMs: limits.windowSeconds * 1000 };
      const quotas = [
        { key: `quota:minute:${principal.userId}`, limit: limits.tokensPerMinute, windowMs: minuteMs },
        { key: `quota:day:${principal.userId}`, limit: limits.tokensPerDay, windowMs: dayMs },
      ];
      const { value } = await onStore((chosen) => chosen.peek({ now, rates: [rate], quotas }));
      return { limits, requests: value.rates[0] ?? { remaining: limits.requests, resetMs: 0 }, minute: value.quotas[0] ?? { used: 0, resetMs: minuteMs }, day: value.quotas[1] ?? { used: 0, resetMs: dayMs } };
    },

    async close() {
      await prepaid?.close();
      await fallback.close();
    },
  };
}

export type LimitsService = ReturnType<typeof createLimitsService>;
