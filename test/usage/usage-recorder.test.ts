// The usage queue never lets one event hold back the others: text PostgreSQL cannot store is made
// storable, and an event the database refuses anyway is dropped alone, counted, while the rest of
// its batch and every later batch are written.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { callGateway, newCaller, newRequestId, startRelay, usageEventsFor, type Relay } from '../helpers/relay-fixtures.js';
import { createLogger } from '../../src/platform/logging.js';
import { createUsageRecorder } from '../../src/usage/usage-recorder.js';
import { createUsageRepository, type UsageEvent } from '../../src/usage/usage-repository.js';

describe.each(backends)('usage recorder (%s)', (backend) => {
  let relay: Relay;

  beforeAll(async () => {
    relay = await startRelay({ backend });
  });

  afterAll(async () => {
    await relay.close();
  });

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
    const repository = createUsageRepository(relay.app.gateway.database.db);
    const dropped: number[] = [];
    const recorder = createUsageRecorder({ repository, logger: createLogger({ config: relay.testApp.config, pretty: false, destination: { write: () => undefined } }), flushIntervalMs: 60_000, onDropped: (count) => dropped.push(count) });
    const event = (requestId: string, promptTokens: number): UsageEvent => ({
      createdAt: new Date(),
      userId: caller.userId,
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
    });
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
});
