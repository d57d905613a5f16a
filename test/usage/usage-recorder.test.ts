// The usage queue never lets one event hold back the others: text PostgreSQL cannot store is made
// storable, and an event the database refuses anyway is dropped alone, counted, while the rest of
// its batch and every later batch are written.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { callGateway, newCaller, newRequestId, startRelay, usageEventsFor, type Relay } from '../helpers/relay-fixtures.js';
import { createUsageRecorder } from '../../src/usage/usage-recorder.js';
import { createUsageRepository, type UsageEvent, type UsageRepository } from '../../src/usage/usage-repository.js';
import { pino } from 'pino';

describe.each(backends)('usage recorder (%s)', (backend) => {
  let relay: Relay;

  beforeAll(async () => {
    relay = await startRelay({ backend });
  });

  afterAll(async () => {
    await relay.close();
  });

  /** A recorder over the real repository; with `failure`, its `failingCall`-th write fails with `error` instead. */
  function recorderOverReal(failure?: { failingCall: number; error: Error }) {
    const real = createUsageRepository(relay.app.gateway.database.db);
    let calls = 0;
    const repository: UsageRepository = {
      ...real,
      insertMany: async (events) => {
        calls += 1;
        if (calls === failure?.failingCall) throw failure.error;
        return real.insertMany(events);
      },
    };
    const dropped: number[] = [];
    const recorder = createUsageRecorder({ repository, logger: silentLogger(), flushIntervalMs: 60_000, onDropped: (count) => dropped.push(count) });
    return { recorder, dropped, calls: () => calls };
  }

  it('a caller’s model name with U+0000 is recorded without it, and later requests are recorded too', async () => {
    const caller = await newCaller(relay.app);
    const hostile = newRequestId();
    const reply = await callGateway({ url: relay.url, path: '/v1/chat/completions', credential: caller.apiKey, headers: { 'x-request-id': hostile }, body: { model: 'no-such\u0000model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 } });
    expect(reply.status).toBeGreaterThanOrEqual(400);
    expect(reply.status).toBeLessThan(500);
    const after = newRequestId();
    const served = await callGateway({ url: relay.url, path: '/v1/chat/completions', credential: caller.apiKey, headers: { 'x-request-id': after }, body: { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 } });
    expect(served.status).toBe(200);

    const [hostileRow] = await usageEventsFor(relay.app, hostile);
    expect(hostileRow?.model).toBe('no-suchmodel');
    expect(await usageEventsFor(relay.app, after)).toHaveLength(1);
  });

  it('an event the database refuses is dropped alone and counted; the rest of its batch and later ones are written', async () => {
    const caller = await newCaller(relay.app);
    const { recorder, dropped } = recorderOverReal();
    const event = (requestId: string, promptTokens: number) => usageEvent(caller.userId, requestId, promptTokens);
    const before = `before-${randomUUID()}`;
    const refused = `refused-${randomUUID()}`;
    const later = `later-${randomUUID()}`;
    recorder.record(event(before, 3));
    // Not an integer: PostgreSQL refuses the row, as it would any value it cannot store.
    recorder.record(event(refused, 1.5));
    recorder.record(event(later, 4));
    await recorder.flush();
    recorder.record(event(`next-${randomUUID()}`, 5));
    await recorder.close();

    expect(dropped).toEqual([1]);
    expect((await usageEventsFor(relay.app, before)).map((row) => row.prompt_tokens)).toEqual([3]);
    expect((await usageEventsFor(relay.app, later)).map((row) => row.prompt_tokens)).toEqual([4]);
    expect(await usageEventsFor(relay.app, refused)).toEqual([]);
  });

  it('when the database goes away during the one-by-one writes, nothing is written twice and nothing is lost', async () => {
    const caller = await newCaller(relay.app);
    // The real repository, except that the fourth call fails as a server shutting down would.
    const { recorder, dropped } = recorderOverReal({ failingCall: 4, error: Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }) });
    const ids = { first: `first-${randomUUID()}`, refused: `refused-${randomUUID()}`, second: `second-${randomUUID()}`, third: `third-${randomUUID()}` };
    recorder.record(usageEvent(caller.userId, ids.first, 3));
    recorder.record(usageEvent(caller.userId, ids.refused, 1.5));
    recorder.record(usageEvent(caller.userId, ids.second, 4));
    recorder.record(usageEvent(caller.userId, ids.third, 5));
    // Calls: the batch (refused), first, refused, second (the server went away).
    await recorder.flush();
    // The next flush writes what was left: second and third, once each.
    await recorder.close();

    expect(dropped).toEqual([1]);
    for (const id of [ids.first, ids.second, ids.third]) expect(await usageEventsFor(relay.app, id)).toHaveLength(1);
    expect(await usageEventsFor(relay.app, ids.refused)).toEqual([]);
  });

  it('a batch that fails for a passing reason (not its content) is kept whole and written later', async () => {
    const caller = await newCaller(relay.app);
    const { recorder, dropped, calls } = recorderOverReal({ failingCall: 1, error: Object.assign(new Error('deadlock detected'), { code: '40P01' }) });
    const ids = [`kept-${randomUUID()}`, `kept-${randomUUID()}`];
    for (const id of ids) recorder.record(usageEvent(caller.userId, id, 2));
    await recorder.flush();
    expect(calls()).toBe(1);
    await recorder.close();

    expect(dropped).toEqual([]);
    for (const id of ids) expect(await usageEventsFor(relay.app, id)).toHaveLength(1);
  });
});

function silentLogger() {
  return pino({ level: 'silent' });
}

function usageEvent(userId: string, requestId: string, promptTokens: number): UsageEvent {
  return {
    createdAt: new Date(),
    userId,
    apiKeyId: null,
    endpoint: 'chat.completions',
    model: 'sim-llama-3-8b',
    stream: false,
    status: 'ok',
    finishReason: 'stop',
    promptTokens,
    completionTokens: 1,
    usageEstimated: false,
    ttftMs: null,
    durationMs: 1,
    requestId,
  };
}
