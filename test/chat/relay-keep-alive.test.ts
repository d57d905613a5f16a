// The gateway's connections to vLLM: kept alive between requests, closed by the gateway when idle
// before vLLM would close them (vLLM does not announce its 5 s), and a request that went out on a
// connection vLLM reset before answering is sent again — to the same server when it is the only
// one — instead of failing the client.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHAT_PATH,
  callGateway,
  chatMessages,
  expectErrorReply,
  metricSum,
  metricsText,
  newCaller,
  newRequestId,
  sleep,
  startRelay,
  upstreamRequestsFor,
  type Caller,
  type Relay,
} from '../helpers/relay-fixtures.js';

const KEEP_ALIVE_MS = 200;

describe('relay connections to vLLM', () => {
  let relay: Relay;
  let caller: Caller;

  beforeAll(async () => {
    relay = await startRelay({
      backend: 'embedded',
      // No health polls or model-list refreshes meanwhile: each connection the simulator counts is a request's.
      environment: { UPSTREAM_KEEP_ALIVE_TIMEOUT_MS: String(KEEP_ALIVE_MS), UPSTREAM_POLL_INTERVAL_MS: '600000', MODELS_CACHE_TTL_MS: '600000' },
    });
    caller = await newCaller(relay.app);
  });

  afterAll(async () => {
    await relay.close();
  });

  const post = (fields: Record<string, unknown> = {}, requestId = newRequestId()) =>
    callGateway({
      url: relay.url,
      path: CHAT_PATH,
      body: { model: 'sim-llama-3-8b', messages: chatMessages('keep it short'), max_tokens: 4, ...fields },
      credential: caller.apiKey,
      headers: { 'x-request-id': requestId },
    });

  async function resetErrors(): Promise<number> {
    return metricSum(await metricsText(relay.url), 'upstream_errors_total', { kind: 'reset' });
  }

  it('reuses a connection for streams one after another, as for JSON answers', async () => {
    const first = await post({ stream: true });
    expect(first.status).toBe(200);
    expect(first.text).toContain('data: [DONE]');
    await sleep(50);
    const afterFirst = relay.simulator.stats().connections;
    for (let index = 0; index < 3; index += 1) {
      const streamed = await post({ stream: true });
      expect(streamed.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
      await sleep(50);
    }
    expect(relay.simulator.stats().connections).toBe(afterFirst);
  });

  it('reuses a connection for requests one after another, and closes it after UPSTREAM_KEEP_ALIVE_TIMEOUT_MS idle', async () => {
    expect((await post()).status).toBe(200);
    const afterFirst = relay.simulator.stats().connections;
    for (let index = 0; index < 3; index += 1) expect((await post()).status).toBe(200);
    expect(relay.simulator.stats().connections).toBe(afterFirst);
    // Well past UPSTREAM_KEEP_ALIVE_TIMEOUT_MS (with room for a busy machine's late timers), well
    // short of the default 4 s and of vLLM's 5 s: only the setting closes the connection.
    await sleep(2000);
    expect((await post()).status).toBe(200);
    expect(relay.simulator.stats().connections).toBe(afterFirst + 1);
  });

  it('sends a request again on a new connection when vLLM reset the one it went out on, though it is the only server', async () => {
    for (const stream of [false, true]) {
      // A request just before leaves its connection idle in the pool, for the next one to go out on.
      expect((await post()).status).toBe(200);
      const resetsBefore = await resetErrors();
      const connectionsBefore = relay.simulator.stats().connections;
      relay.simulator.setFault({ refuse: true }, { times: 1 });
      const reply = await post({ stream });
      expect(reply.status).toBe(200);
      expect(reply.text).toContain(stream ? 'data: [DONE]' : '"finish_reason"');
      expect(await resetErrors()).toBe(resetsBefore + 1);
      expect(relay.simulator.stats().connections).toBe(connectionsBefore + 1);
    }
  });

  it('does not send it again to the same server when the reset came later: it may have cut a generation under way', async () => {
    const requestId = newRequestId();
    const resetsBefore = await resetErrors();
    // vLLM answers a JSON request only at its end: here the connection breaks 1.2 s in, unanswered.
    const reply = await post({ sim_fault: { delay_ms: 1200, cut_after_chunks: 0 } }, requestId);
    expectErrorReply(reply, 502, 'upstream_unavailable');
    expect(upstreamRequestsFor(relay.simulator, requestId)).toHaveLength(1);
    expect(await resetErrors()).toBe(resetsBefore + 1);
  });

  it('sends it again once only: a server that resets the retry too is a 502', async () => {
    const resetsBefore = await resetErrors();
    relay.simulator.setFault({ refuse: true }, { times: 2 });
    expectErrorReply(await post(), 502, 'upstream_unavailable');
    expect(await resetErrors()).toBe(resetsBefore + 2);
    expect((await post()).status).toBe(200);
  });
});
