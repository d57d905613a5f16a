// A client that leaves (before the first token, mid-stream, during a non-streaming request) or stops
// reading must free vLLM at once: the simulator's running count drops to 0, it counts an abort, and
// the gateway records the request as aborted with an estimated usage.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import {
  CHAT_PATH,
  chatMessages,
  countContentEvents,
  metricSum,
  metricsText,
  newCaller,
  newRequestId,
  openRawPost,
  readUntil,
  startRelay,
  usageEventFor,
  type Caller,
  type Relay,
} from '../helpers/relay-fixtures.js';

const INTER_TOKEN_MS = 50;
const SLOW_CLIENT_TIMEOUT_MS = 300;
/** With four choices (~40 MB of events), far more than every socket buffer between the simulator, the gateway and a client that stops reading can hold: the stream cannot end before the slow-client timeout. */
const HUGE_MAX_TOKENS = 40_000;

describe.each(backends)('relay: client gone → upstream gone (%s)', (backend) => {
  let relay: Relay;
  let caller: Caller;

  beforeAll(async () => {
    relay = await startRelay({
      backend,
      environment: { SLOW_CLIENT_TIMEOUT_MS: String(SLOW_CLIENT_TIMEOUT_MS), MAX_TOKENS_CAP: String(HUGE_MAX_TOKENS) },
      simulator: { interTokenMs: INTER_TOKEN_MS, models: [{ id: 'sim-llama-3-8b', maxModelLen: 65_536 }] },
    });
    caller = await newCaller(relay.app);
  });

  afterAll(async () => {
    await relay.close();
  });

  // 200 tokens at 50 ms: ten seconds, so only an abort ends these requests within a test.
  const slowBody = (stream: boolean): Record<string, unknown> => ({
    model: 'sim-llama-3-8b',
    messages: chatMessages('take your time'),
    max_tokens: 200,
    ignore_eos: true,
    stream,
  });

  function open(options: { body: Record<string, unknown>; requestId: string }): ReturnType<typeof openRawPost> {
    return openRawPost({ url: relay.url, path: CHAT_PATH, body: options.body, credential: caller.apiKey, requestId: options.requestId });
  }

  /** Waits for the simulator to be idle again, within the contract's few hundred milliseconds. */
  async function expectUpstreamAborted(abortsBefore: number): Promise<void> {
    const stats = await relay.simulator.waitForStats((current) => current.running === 0, 1000);
    expect(stats.finished.abort).toBe(abortsBefore + 1);
  }

  it('aborts upstream when the client leaves before the first token', async () => {
    relay.simulator.update({ timeToFirstTokenMs: 3000 });
    try {
      const abortsBefore = relay.simulator.stats().finished.abort;
      const requestId = newRequestId();
      const exchange = open({ body: slowBody(true), requestId });
      await relay.simulator.waitForStats((stats) => stats.running === 1, 2000);
      exchange.destroy();
      await expectUpstreamAborted(abortsBefore);

      const event = await usageEventFor(relay.app, requestId);
      expect(event).toMatchObject({ status: 'aborted', stream: true, usage_estimated: true, user_id: caller.userId, api_key_id: caller.apiKeyId });
    } finally {
      relay.simulator.update({ timeToFirstTokenMs: 0 });
    }
  });

  it('aborts upstream when the client leaves mid-stream, and records an aborted, estimated usage event', async () => {
    const abortsBefore = relay.simulator.stats().finished.abort;
    const abortedBefore = metricSum(await metricsText(relay.url), 'chat_aborted_streams_total', { reason: 'client_disconnect' });
    const requestId = newRequestId();
    const exchange = open({ body: slowBody(true), requestId });
    const response = await exchange.response;
    expect(response.statusCode).toBe(200);
    const received = await readUntil(response, (text) => countContentEvents(text) >= 5);
    const seenContentEvents = countContentEvents(received);
    const leftAt = performance.now();
    exchange.destroy();
    await expectUpstreamAborted(abortsBefore);
    expect(performance.now() - leftAt).toBeLessThan(1000);

    const event = await usageEventFor(relay.app, requestId);
    expect(event).toMatchObject({ status: 'aborted', stream: true, usage_estimated: true, endpoint: 'chat.completions', request_id: requestId });
    // Roughly the tokens generated before the abort: at least those the client saw, far from the 200 planned.
    expect(event.completion_tokens).toBeGreaterThanOrEqual(seenContentEvents - 1);
    expect(event.completion_tokens).toBeLessThan(seenContentEvents + 20);
    expect(event.prompt_tokens).toBeGreaterThan(0);

    const metrics = await metricsText(relay.url);
    expect(metricSum(metrics, 'chat_aborted_streams_total', { reason: 'client_disconnect' })).toBe(abortedBefore + 1);
    expect(metricSum(metrics, 'chat_active_streams')).toBe(0);
  });

  it('aborts upstream when the client leaves during a non-streaming request', async () => {
    const abortsBefore = relay.simulator.stats().finished.abort;
    const requestId = newRequestId();
    const exchange = open({ body: slowBody(false), requestId });
    await relay.simulator.waitForStats((stats) => stats.running === 1, 2000);
    // Let a few tokens be generated first.
    await new Promise((resolve) => setTimeout(resolve, 4 * INTER_TOKEN_MS));
    exchange.destroy();
    await expectUpstreamAborted(abortsBefore);

    const event = await usageEventFor(relay.app, requestId);
    expect(event).toMatchObject({ status: 'aborted', stream: false, usage_estimated: true, request_id: requestId });
  });

  it('waits for a client that stops reading for less than SLOW_CLIENT_TIMEOUT_MS: every event arrives once, and vLLM is not cut', async () => {
    relay.simulator.update({ interTokenMs: 0 });
    // ~10 MB of events: more than the socket buffers between the gateway and the client hold.
    const tokens = HUGE_MAX_TOKENS;
    const exchange = open({
      body: { model: 'sim-llama-3-8b', messages: chatMessages('flood me, then wait'), max_tokens: tokens, ignore_eos: true, stream: true },
      requestId: newRequestId(),
    });
    try {
      const before = relay.simulator.stats().finished;
      const response = await exchange.response;
      expect(response.statusCode).toBe(200);
      let text = '';
      response.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      // Three pauses of half the deadline while the stream is still coming: the buffers between
      // the gateway and the client fill, so the gateway's writes stop draining and vLLM's stream waits.
      for (let pause = 0; pause < 3; pause += 1) {
        response.pause();
        await new Promise((resolve) => setTimeout(resolve, SLOW_CLIENT_TIMEOUT_MS / 2));
        response.resume();
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await new Promise((resolve) => response.once('end', resolve));
      expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
      expect(countContentEvents(text)).toBe(tokens);
      // All of one completion: nothing of another stream mixed in.
      const firstIds = text.split('\n\n').filter((frame) => frame.startsWith('data: {')).map((frame) => (JSON.parse(frame.slice(6)) as { id: string }).id);
      expect(new Set(firstIds).size).toBe(1);
      const stats = await relay.simulator.waitForStats((current) => current.running === 0, 2000);
      expect(stats.finished.abort).toBe(before.abort);
      expect(stats.finished.length).toBe(before.length + 1);
    } finally {
      exchange.destroy();
      relay.simulator.update({ interTokenMs: INTER_TOKEN_MS });
    }
  });

  it('aborts upstream instead of buffering for a client that stops reading (SLOW_CLIENT_TIMEOUT_MS)', async () => {
    relay.simulator.update({ interTokenMs: 0 });
    const exchange = open({
      body: { model: 'sim-llama-3-8b', messages: chatMessages('flood me'), max_tokens: HUGE_MAX_TOKENS, n: 4, ignore_eos: true, stream: true },
      requestId: newRequestId(),
    });
    try {
      const before = relay.simulator.stats().finished;
      const response = await exchange.response;
      // Never read: the socket buffers fill and the gateway's writes stop draining.
      response.pause();
      expect(response.statusCode).toBe(200);
      const stats = await relay.simulator.waitForStats((current) => current.running === 0, 8000);
      expect(stats.finished.abort).toBe(before.abort + 1);
      // It did not run to its end into the gateway's memory.
      expect(stats.finished.length).toBe(before.length);
    } finally {
      exchange.destroy();
      relay.simulator.update({ interTokenMs: INTER_TOKEN_MS });
    }
  });
});
