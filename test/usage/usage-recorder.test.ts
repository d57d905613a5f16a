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

  it('writes every field of a batch exactly as recorded: nulls, and text that means something in an array literal', async () => {
    const caller = await newCaller(relay.app);
    const { recorder } = recorderOverReal();
    const key = randomUUID();
    const awkward = ['NULL', '', 'a,b', '{braces}', 'quote " and \\ backslash', 'ünï\u{1F600}', ' spaced ', '\t\ttabs'];
    const events = awkward.map((text, index): UsageEvent => ({
      createdAt: new Date(Date.UTC(2026, 10, 28, 3, 0, 0, 123 + index)),
      userId: caller.userId,
      apiKeyId: index % 2 === 0 ? null : caller.apiKeyId,
      endpoint: index % 2 === 0 ? 'chat.completions' : 'completions',
      model: text,
      stream: index % 2 === 0,
      status: 'aborted',
      finishReason: index % 3 === 0 ? null : text,
      promptTokens: index,
      completionTokens: 1000 + index,
      usageEstimated: index % 2 === 1,
      ttftMs: index % 2 === 0 ? null : index,
      durationMs: 2_000_000 + index,
      requestId: `${key}:${index}:${text}`,
    }));
    for (const event of events) recorder.record(event);
    await recorder.flush();
    await recorder.close();
    for (const [index, event] of events.entries()) {
      const rows = await usageEventsFor(relay.app, event.requestId);
      expect(rows, `event ${index}`).toHaveLength(1);
      expect(rows[0]).toMatchObject({
        user_id: event.userId,
        api_key_id: event.apiKeyId,
        endpoint: event.endpoint,
        model: event.model,
        stream: event.stream,
        status: event.status,
        finish_reason: event.finishReason,
        prompt_tokens: event.promptTokens,
        completion_tokens: event.completionTokens,
        usage_estimated: event.usageEstimated,
        ttft_ms: event.ttftMs,
        duration_ms: event.durationMs,
        request_id: event.requestId,
      });
      expect(new Date(rows[0]!.created_at).getTime(), `created_at of event ${index}`).toBe(event.createdAt.getTime());
    }
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
