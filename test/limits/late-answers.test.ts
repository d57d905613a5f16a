// What a check Redis answers after the instance stopped waiting leaves behind there. The instance
// decided alone (on its memory); Redis's own decision still counts there and must be undone:
// - answered late: given back as the generation ended (settled with its real usage, slot freed),
//   also when this instance refused on its memory while Redis granted;
// - never answered (the connection's own timeout ran out, or it broke): settled only if Redis ran
//   it — a settlement that applies only while its lease is held, sent after it on the same line;
// - a give-back that fails (Redis answered, then broke) is logged once per interval, with its cost.
// The store is the in-process one behind a wrapper posing as Redis, whose answers a test delays,
// loses or fails; what it holds afterwards is read through peek and admit.
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Principal } from '../../src/auth/authenticate.js';
import { createLimitsService, type LimitsService } from '../../src/limits/limits-service.js';
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { createMemoryStore } from '../../src/platform/memory-store.js';
import { testConfig } from '../helpers/environment.js';
import { eventually, sleep } from '../helpers/limits-fixtures.js';

const STORE_TIMEOUT_MS = 20;
// Far past the 20 ms the instance waits, so a stalled event loop on a busy machine cannot let the
// "late" answer arrive in time.
const LATE_BY_MS = 250;
const DAY_QUOTA = 1000;
const RESERVE = 10;

/** 'ran, answered late': run at once, its answer held back (a slow line back, or a stalled reader). */
type AdmitBehaviour = 'prompt' | 'late' | 'ran, answered late' | 'lost after running' | 'lost without running' | 'down';

/** The in-process store posing as Redis: each admission behaves as `admitBehaviour` says. */
function posingStore() {
  const memory = createMemoryStore();
  /** settleFailures: how many settlements from now on fail, as on a connection being re-made. */
  const control = { admitBehaviour: 'prompt' as AdmitBehaviour, settleFails: false, settleFailures: 0, settleTimesOut: false, answersGiven: 0, settlements: 0 };
  const store: KeyValueStore = {
    ...memory,
    kind: 'redis',
    async admit(request) {
      const behaviour = control.admitBehaviour;
      // What ioredis says when the connection is down and its offline queue is off: never written.
      if (behaviour === 'down') throw new Error("Stream isn't writeable and enableOfflineQueue options is false");
      if (behaviour === 'prompt') return memory.admit(request);
      if (behaviour === 'ran, answered late') {
        const ran = await memory.admit(request);
        await sleep(LATE_BY_MS);
        control.answersGiven += 1;
        return ran;
      }
      await sleep(LATE_BY_MS);
      if (behaviour === 'lost without running') throw new Error('Command timed out');
      const result = await memory.admit(request);
      if (behaviour === 'lost after running') throw new Error('Command timed out');
      control.answersGiven += 1;
      return result;
    },
    settle(settlement) {
      control.settlements += 1;
      // Written on a connection that is up, but Redis does not answer (it runs it when it does).
      if (control.settleTimesOut) return Promise.reject(new Error('Command timed out'));
      if (control.settleFails || control.settleFailures > 0) {
        control.settleFailures -= 1;
        return Promise.reject(new Error('Connection is closed.'));
      }
      return memory.settle(settlement);
    },
  };
  return { store, memory, control };
}

function capturedLogger() {
  const lines: Array<{ msg: string; err?: { message: string } }> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString('utf8')) as (typeof lines)[number]);
      done();
    },
  });
  return { logger: pino({ level: 'warn' }, destination), lines };
}

const principal = (userId: string): Principal => ({
  kind: 'api_key',
  userId,
  role: 'user',
  apiKeyId: randomUUID(),
  limits: { rate_limit_requests: null, rate_limit_window_seconds: null, token_quota_per_minute: null, token_quota_per_day: null, max_concurrent_streams: null },
});

describe('checks Redis answered late, or never', () => {
  let limits: LimitsService | null = null;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);

  function start(environment: Record<string, string> = {}) {
    const posing = posingStore();
    const captured = capturedLogger();
    const config = testConfig({
      backend: 'embedded',
      environment: { LIMITS_STORE_TIMEOUT_MS: String(STORE_TIMEOUT_MS), TOKEN_QUOTA_PER_DAY: String(DAY_QUOTA), MAX_CONCURRENT_STREAMS: '1', ...environment },
    }).limits;
    limits = createLimitsService({ config, store: posing.store, registry: new Registry(), logger: captured.logger });
    process.on('unhandledRejection', onUnhandled);
    /** The day's tokens used and whether a new generation would get a slot, as the store behind sees them. */
    const standing = async (userId: string) => {
      const now = Date.now();
      const day = await posing.memory.peek({ now, rates: [], quotas: [{ key: `quota:day:${userId}`, limit: DAY_QUOTA, windowMs: 86_400_000 }] });
      // A lease that is held and has not lapsed refuses it; its own is released at once.
      const probe = { key: `concurrency:${userId}`, limit: 1, leaseId: 'probe', leaseTtlMs: 1 };
      const slot = await posing.memory.admit({ now, rates: [], quotas: [], concurrency: probe });
      await posing.memory.settle({ quotas: [], release: { key: probe.key, leaseId: probe.leaseId } });
      return { tokensUsed: day.quotas[0]?.used ?? 0, slotFree: slot.allowed };
    };
    const service = limits;
    /** An admission of `userId` while the store behaves as `behaviour`. */
    const admit = async (userId: string, behaviour: AdmitBehaviour) => {
      posing.control.admitBehaviour = behaviour;
      const admission = await service.admitGeneration({ principal: principal(userId), ip: '192.0.2.1', reserveTokens: RESERVE });
      if (admission === null) throw new Error('admitted without a precondition, it cannot be null');
      return admission;
    };
    return { ...posing, ...captured, limits: service, standing, admit };
  }

  afterEach(async () => {
    vi.useRealTimers();
    process.off('unhandledRejection', onUnhandled);
    await limits?.close();
    limits = null;
    expect(unhandled).toEqual([]);
  });

  it('settles a check answered late with the real usage once the generation is over', async () => {
    const { control, standing, admit } = start();
    const userId = randomUUID();
    await (await admit(userId, 'late')).finish({ prompt_tokens: 3, completion_tokens: 4 });
    await eventually(async () => expect(control.answersGiven).toBe(1));
    await eventually(async () => expect(await standing(userId)).toEqual({ tokensUsed: 7, slotFree: true }));
  });

  it('settles a check whose answer was lost, if it ran: its lease is there, so it is freed and its reservation becomes the usage', async () => {
    const { standing, admit } = start();
    const userId = randomUUID();
    const admission = await admit(userId, 'lost after running');
    // The answer is lost while the generation runs; it is settled when the generation is over.
    await sleep(2 * LATE_BY_MS);
    expect(await standing(userId)).toEqual({ tokensUsed: RESERVE, slotFree: false });
    await admission.finish({ prompt_tokens: 2, completion_tokens: 3 });
    await eventually(async () => expect(await standing(userId)).toEqual({ tokensUsed: 5, slotFree: true }));
  });

  it('settles a lost check the moment its answer is lost when the generation was already over', async () => {
    const { standing, admit } = start();
    const userId = randomUUID();
    await (await admit(userId, 'lost after running')).finish({ prompt_tokens: 1, completion_tokens: 1 });
    await eventually(async () => expect(await standing(userId)).toEqual({ tokensUsed: 2, slotFree: true }));
  });

  it.each(['late', 'lost after running'] as const)(
    'keeps what Redis granted (%s) alive through a generation longer than the lease, and settles it at the end',
    async (behaviour) => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval', 'clearTimeout', 'clearInterval', 'setImmediate', 'Date'] });
      const { standing, admit } = start();
      const userId = randomUUID();
      const admitting = admit(userId, behaviour);
      await vi.advanceTimersByTimeAsync(STORE_TIMEOUT_MS + 5);
      const admission = await admitting;
      // Five minutes of streaming: the lease (60 s, renewed every 20 s) must still be in the store.
      await vi.advanceTimersByTimeAsync(5 * 60_000);
      expect(await standing(userId)).toEqual({ tokensUsed: RESERVE, slotFree: false });
      await admission.finish({ prompt_tokens: 4, completion_tokens: 5 });
      await vi.advanceTimersByTimeAsync(10);
      expect(await standing(userId)).toEqual({ tokensUsed: 9, slotFree: true });
    },
  );

  it('tries again, after the reconnection and with growing waits while Redis stays away, to settle a check lost after its generation ended; and stops in time for its lease', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval', 'clearTimeout', 'clearInterval', 'setImmediate', 'Date'] });
    const { control, standing, admit, lines } = start();
    /** A check that ran but whose answer is lost, its generation over before the loss is known. */
    const finishLost = async (userId: string, usage: { prompt_tokens: number; completion_tokens: number }) => {
      const admitting = admit(userId, 'lost after running');
      await vi.advanceTimersByTimeAsync(STORE_TIMEOUT_MS + 5);
      await (await admitting).finish(usage);
    };
    const settled = randomUUID();
    await finishLost(settled, { prompt_tokens: 2, completion_tokens: 2 });
    // The connection is being re-made for three tries: at the loss, then 2.5 s and 5 s later; the fourth, 10 s after that, lands.
    control.settleFailures = 3;
    await vi.advanceTimersByTimeAsync(LATE_BY_MS);
    for (const [waitMs, tries] of [
      [2_500, 2],
      [5_000, 3],
      [10_000, 4],
    ] as const) {
      expect(await standing(settled)).toEqual({ tokensUsed: RESERVE, slotFree: false });
      await vi.advanceTimersByTimeAsync(waitMs + 10);
      expect(control.settlements).toBe(tries);
    }
    expect(await standing(settled)).toEqual({ tokensUsed: 4, slotFree: true });
    // Away for good: five tries in all (the last 37.5 s after the first), then one warning and no more.
    await finishLost(randomUUID(), { prompt_tokens: 1, completion_tokens: 1 });
    control.settleFails = true;
    const before = control.settlements;
    await vi.advanceTimersByTimeAsync(LATE_BY_MS + 40_000);
    expect(control.settlements - before).toBe(5);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(control.settlements - before).toBe(5);
    expect(lines.filter((line) => line.msg.includes('could not be settled there'))).toHaveLength(1);
    // Redis up but not answering: a settlement that timed out stays queued there; none is piled on.
    await vi.advanceTimersByTimeAsync(10_000);
    control.settleFails = false;
    control.settleTimesOut = true;
    await finishLost(randomUUID(), { prompt_tokens: 1, completion_tokens: 1 });
    const beforeHung = control.settlements;
    await vi.advanceTimersByTimeAsync(LATE_BY_MS + 40_000);
    expect(control.settlements - beforeHung).toBe(1);
  });

  it('changes nothing for a lost check that never ran', async () => {
    const { standing, admit } = start();
    const userId = randomUUID();
    // One generation through Redis first, so its day counter exists (and holds 6).
    await (await admit(userId, 'prompt')).finish({ prompt_tokens: 2, completion_tokens: 4 });
    await (await admit(userId, 'lost without running')).finish({ prompt_tokens: 1, completion_tokens: 1 });
    await sleep(2 * LATE_BY_MS);
    // Had the settlement applied regardless, the counter would be 6 + (2 - 10), held at 0.
    expect(await standing(userId)).toEqual({ tokensUsed: 6, slotFree: true });
  });

  it('gives back what Redis granted late when this instance had refused on its memory', async () => {
    const { control, limits: service, standing, admit } = start({ RATE_LIMIT_REQUESTS: '2' });
    const userId = randomUUID();
    // Redis down: two generations on this instance's memory use up its rate of 2; Redis saw none.
    for (let index = 0; index < 2; index += 1) await (await admit(userId, 'down')).finish({ prompt_tokens: 1, completion_tokens: 0 });
    // Redis slow: the memory refuses the third, Redis grants it late.
    control.admitBehaviour = 'late';
    await expect(service.admitGeneration({ principal: principal(userId), ip: '192.0.2.1', reserveTokens: RESERVE })).rejects.toMatchObject({ code: 'rate_limited' });
    await eventually(async () => expect(control.answersGiven).toBe(1));
    await eventually(async () => expect(await standing(userId)).toEqual({ tokensUsed: 0, slotFree: true }));
  });

  it('gives back at once what Redis granted a check refused on this instance’s memory: the admission after a failed precondition finds no slot of it', async () => {
    const { control, memory, limits: service, standing } = start();
    const userId = randomUUID();
    // A judged credential's state, as Redis holds it: never in this instance's memory.
    await memory.set('auth:key:judged', 'judged');
    control.admitBehaviour = 'ran, answered late';
    const precondition = { keys: ['auth:key:judged'], values: ['judged'] };
    expect(await service.admitGeneration({ principal: principal(userId), ip: '192.0.2.1', reserveTokens: RESERVE, precondition })).toBeNull();
    // The credential checked in full, its admission is answered in time: the one slot is free there.
    control.admitBehaviour = 'prompt';
    const admission = await service.admitGeneration({ principal: principal(userId), ip: '192.0.2.1', reserveTokens: RESERVE });
    await admission!.finish({ prompt_tokens: 2, completion_tokens: 3 });
    // The late answer's own give-back finds its lease gone: the reservation is not refunded twice.
    await eventually(async () => expect(control.answersGiven).toBe(1));
    await sleep(20);
    expect(await standing(userId)).toEqual({ tokensUsed: 5, slotFree: true });
  });

  it('sends nothing and logs nothing for checks refused before they were written (Redis down): Redis ran none of them', async () => {
    const { control, lines, admit } = start();
    control.settleFails = true;
    for (let index = 0; index < 3; index += 1) await (await admit(randomUUID(), 'down')).finish({ prompt_tokens: 1, completion_tokens: 1 });
    await sleep(50);
    expect(control.settlements).toBe(0);
    expect(lines.filter((line) => line.msg.includes('could not be settled there'))).toEqual([]);
  });

  it('logs a failed give-back once per interval, with what it costs', async () => {
    const { control, lines, admit } = start();
    control.settleFails = true;
    for (let index = 0; index < 2; index += 1) await (await admit(randomUUID(), 'late')).finish({ prompt_tokens: 3, completion_tokens: 4 });
    await eventually(async () => expect(control.answersGiven).toBe(2));
    await sleep(2 * LATE_BY_MS);
    const giveBackLines = lines.filter((line) => line.msg.includes('could not be settled there'));
    expect(giveBackLines).toHaveLength(1);
    expect(giveBackLines[0]!.msg).toContain('slot lapses within 60 s');
    expect(giveBackLines[0]!.err?.message).toBe('Connection is closed.');
  });
});
