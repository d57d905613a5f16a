// When vLLM fails: unreachable, silent, erroring, refusing, or breaking a stream half-way. Before a
// stream starts the client gets a JSON envelope (502/504); after, an error event and `[DONE]` —
// a stream never just stops, and a broken upstream request is closed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHAT_PATH,
  COMPLETIONS_PATH,
  callGateway,
  callSimulator,
  callSimulatorUntilCut,
  chatMessages,
  closedPort,
  expectErrorReply,
  newCaller,
  newRequestId,
  sseData,
  startRelay,
  upstreamRequestFor,
  type Caller,
  type HttpReply,
  type Relay,
} from '../helpers/relay-fixtures.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';
import { relaxedAuthLimits } from '../helpers/auth-client.js';
import { MALFORMED_EVENT } from '../../src/sim/index.js';

const HEADERS_TIMEOUT_MS = 400;
const TOTAL_TIMEOUT_MS = 1500;
const INTER_TOKEN_MS = 20;

describe('relay upstream failures', () => {
  let relay: Relay;
  let caller: Caller;

  beforeAll(async () => {
    relay = await startRelay({
      backend: 'embedded',
      environment: { UPSTREAM_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS), UPSTREAM_TOTAL_TIMEOUT_MS: String(TOTAL_TIMEOUT_MS) },
      simulator: { interTokenMs: INTER_TOKEN_MS },
    });
    caller = await newCaller(relay.app);
  });

  afterAll(async () => {
    await relay.close();
  });

  function post(options: { path?: string; body: Record<string, unknown>; requestId?: string }): Promise<HttpReply> {
    return callGateway({
      url: relay.url,
      path: options.path ?? CHAT_PATH,
      body: options.body,
      credential: caller.apiKey,
      headers: { 'x-request-id': options.requestId ?? newRequestId() },
    });
  }

  const chat = (fields: Record<string, unknown>): Record<string, unknown> => ({
    model: 'sim-llama-3-8b',
    messages: chatMessages('fail for me'),
    seed: 1,
    max_tokens: 8,
    ...fields,
  });

  describe('before the answer starts', () => {
    it('answers 502 upstream_error when vLLM answers 500, streaming or not', async () => {
      for (const stream of [false, true]) {
        const reply = await post({ body: chat({ stream, sim_fault: { status: 500 } }) });
        expectErrorReply(reply, 502, 'upstream_error');
      }
      const completion = await post({ path: COMPLETIONS_PATH, body: { model: 'sim-llama-3-8b', prompt: 'x', sim_fault: { status: 500 } } });
      expectErrorReply(completion, 502, 'upstream_error');
    });

    it('answers 502 when vLLM drops the connection without answering, again when the request is sent again', async () => {
      for (const stream of [false, true]) {
        const reply = await post({ body: chat({ stream, sim_fault: { refuse: true } }) });
        expectErrorReply(reply, 502, ['upstream_unavailable', 'upstream_error']);
      }
    });

    it('answers 504 upstream_timeout when a stream’s response headers take longer than UPSTREAM_HEADERS_TIMEOUT_MS', async () => {
      const started = performance.now();
      const reply = await post({ body: chat({ stream: true, sim_fault: { delay_ms: 5000 } }) });
      const elapsed = performance.now() - started;
      expectErrorReply(reply, 504, 'upstream_timeout');
      expect(elapsed).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50);
      // The headers timeout, not the total one, ended it.
      expect(elapsed).toBeLessThan(TOTAL_TIMEOUT_MS - 200);
    });

    it('lets a non-streaming answer take longer than the headers timeout (its headers come at the end)', async () => {
      const started = performance.now();
      // 35 tokens at 20 ms: about 700 ms, between the two timeouts.
      const reply = await post({ body: chat({ max_tokens: 35, ignore_eos: true }) });
      expect(reply.status, reply.text).toBe(200);
      expect(performance.now() - started).toBeGreaterThan(HEADERS_TIMEOUT_MS);
      expect((JSON.parse(reply.text) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(35);
    });

    it('answers 504 upstream_timeout when a non-streaming request outlasts UPSTREAM_TOTAL_TIMEOUT_MS, and closes the upstream request', async () => {
      const abortsBefore = relay.simulator.stats().finished.abort;
      const started = performance.now();
      // 250 tokens at 20 ms: about 5 s.
      const reply = await post({ body: chat({ max_tokens: 250, ignore_eos: true }) });
      const elapsed = performance.now() - started;
      expectErrorReply(reply, 504, 'upstream_timeout');
      expect(elapsed).toBeGreaterThanOrEqual(TOTAL_TIMEOUT_MS - 50);
      expect(elapsed).toBeLessThan(TOTAL_TIMEOUT_MS + 1500);
      const stats = await relay.simulator.waitForStats((current) => current.running === 0, 1000);
      expect(stats.finished.abort).toBe(abortsBefore + 1);
    });
  });

  describe('vLLM unreachable', () => {
    let testApp: TestApp;
    let url: string;
    let unreachableCaller: Caller;

    beforeAll(async () => {
      const port = await closedPort();
      testApp = await createTestApp({ backend: 'embedded', environment: { ...relaxedAuthLimits, VLLM_BASE_URL: `http://127.0.0.1:${port}` } });
      url = await testApp.app.listen({ port: 0, host: '127.0.0.1' });
      unreachableCaller = await newCaller(testApp.app);
    });

    afterAll(async () => {
      await testApp.close();
    });

    it('answers 502 upstream_unavailable, streaming or not, chat and completions', async () => {
      const bodies: Array<[string, Record<string, unknown>]> = [
        [CHAT_PATH, chat({})],
        [CHAT_PATH, chat({ stream: true })],
        [COMPLETIONS_PATH, { model: 'sim-llama-3-8b', prompt: 'x', max_tokens: 3 }],
        [COMPLETIONS_PATH, { model: 'sim-llama-3-8b', prompt: 'x', max_tokens: 3, stream: true }],
      ];
      for (const [path, body] of bodies) {
        const reply = await callGateway({ url, path, body, credential: unreachableCaller.apiKey });
        expectErrorReply(reply, 502, 'upstream_unavailable');
      }
    });
  });

  describe('mid-stream', () => {
    const streamBody = (fault: Record<string, number>): Record<string, unknown> =>
      chat({ messages: chatMessages('break half-way'), seed: 2, max_tokens: 60, ignore_eos: true, stream: true, sim_fault: fault });

    it('cut after N chunks: the client gets those N chunks, then an error event and [DONE]', async () => {
      const requestId = newRequestId();
      const body = streamBody({ cut_after_chunks: 3 });
      const reply = await post({ body, requestId });
      expect(reply.status, reply.text).toBe(200);
      const direct = await callSimulatorUntilCut({ simulator: relay.simulator, path: CHAT_PATH, body, requestId });
      expect(direct.complete).toBe(false);
      const directFrames = direct.text.split('\n\n').filter((frame) => frame !== '');
      expect(directFrames).toHaveLength(3);

      const events = sseData(reply.text);
      expect(events).toHaveLength(5);
      expect(events.slice(0, 3).map((payload) => `data: ${payload}`)).toEqual(directFrames);
      const errorEvent = JSON.parse(events[3]!) as { error?: { message?: unknown } };
      expect(typeof errorEvent.error?.message).toBe('string');
      expect(events[4]).toBe('[DONE]');
    });

    it('forwards vLLM’s own mid-stream error event, followed by [DONE]', async () => {
      const requestId = newRequestId();
      const body = streamBody({ error_after_chunks: 2 });
      const reply = await post({ body, requestId });
      const direct = await callSimulator({ simulator: relay.simulator, path: CHAT_PATH, body, requestId });
      expect(reply.status, reply.text).toBe(200);
      expect(reply.text).toBe(direct.text);
      const events = sseData(reply.text);
      expect(events).toHaveLength(4);
      expect(JSON.parse(events[2]!)).toMatchObject({ error: { code: 500 } });
      expect(events[3]).toBe('[DONE]');
    });

    it('never forwards a malformed chunk: good chunks, an error event, [DONE], and the upstream request is closed', async () => {
      const abortsBefore = relay.simulator.stats().finished.abort;
      const requestId = newRequestId();
      // 60 tokens at 20 ms: vLLM would go on for over a second after the bad chunk.
      const body = streamBody({ malformed_after_chunks: 2 });
      const reply = await post({ body, requestId });
      expect(reply.status, reply.text).toBe(200);
      expect(reply.text).not.toContain(MALFORMED_EVENT.trim());
      expect(reply.text).not.toContain('oops');

      const events = sseData(reply.text);
      expect(events.at(-1)).toBe('[DONE]');
      expect(events).toHaveLength(4);
      const direct = await callSimulator({ simulator: relay.simulator, path: CHAT_PATH, body, requestId });
      expect(events.slice(0, 2).map((payload) => `data: ${payload}\n\n`).join('')).toBe(direct.text.slice(0, direct.text.indexOf(MALFORMED_EVENT)));
      expect(JSON.parse(events[2]!)).toMatchObject({ error: { message: expect.any(String) } });

      const stats = await relay.simulator.waitForStats((current) => current.running === 0 && current.finished.abort >= abortsBefore + 1, 1000);
      // Our call and the direct one: only the gateway's was aborted (the direct one ran to its end).
      expect(stats.finished.abort).toBe(abortsBefore + 1);
      expect(upstreamRequestFor(relay.simulator, requestId).path).toBe(CHAT_PATH);
    });
  });
});
