// The verbatim relay: what a client receives through /v1 is, byte for byte, what vLLM (the
// simulator) sends for the same body and request id — JSON and SSE, chat and completions, n > 1 —
// and the usage chunk reaches the client only when the client asked for it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHAT_PATH,
  COMPLETIONS_PATH,
  callGateway,
  callSimulator,
  chatMessages,
  newCaller,
  newRequestId,
  parseJson,
  sseData,
  startRelay,
  upstreamRequestFor,
  type Caller,
  type HttpReply,
  type Relay,
} from '../helpers/relay-fixtures.js';

interface ChunkShape {
  id: string;
  choices: Array<{ index: number }>;
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
}

describe('relay transcripts', () => {
  let relay: Relay;
  let caller: Caller;

  beforeAll(async () => {
    relay = await startRelay({ backend: 'embedded' });
    caller = await newCaller(relay.app);
  });

  afterAll(async () => {
    await relay.close();
  });

  /** The same body through the gateway and straight to the simulator, with one request id. */
  async function throughBoth(options: { path: string; body: Record<string, unknown>; directBody?: Record<string, unknown> }): Promise<{
    viaGateway: HttpReply;
    direct: HttpReply;
    requestId: string;
  }> {
    const requestId = newRequestId();
    const viaGateway = await callGateway({
      url: relay.url,
      path: options.path,
      body: options.body,
      credential: caller.apiKey,
      headers: { 'x-request-id': requestId, 'accept-encoding': 'gzip, deflate, br' },
    });
    const direct = await callSimulator({ simulator: relay.simulator, path: options.path, body: options.directBody ?? options.body, requestId });
    expect(direct.status, direct.text).toBe(200);
    return { viaGateway, direct, requestId };
  }

  function expectStreamHeaders(reply: HttpReply): void {
    expect(reply.headers.get('content-type') ?? '').toMatch(/^text\/event-stream/);
    expect(reply.headers.get('cache-control') ?? '').toContain('no-cache');
    expect(reply.headers.get('x-accel-buffering')).toBe('no');
    expect(reply.headers.get('content-encoding')).toBeNull();
  }

  function expectSameBytes(viaGateway: HttpReply, direct: HttpReply): void {
    expect(viaGateway.status, viaGateway.text).toBe(200);
    // Compared as text first for a readable diff, then as bytes (multibyte words cross chunk boundaries).
    expect(viaGateway.text).toBe(direct.text);
    expect(viaGateway.bytes.equals(direct.bytes)).toBe(true);
  }

  it('relays a non-streaming chat completion byte for byte, under the caller’s request id', async () => {
    const body = { model: 'sim-llama-3-8b', messages: chatMessages('Say something about gateways'), seed: 11, max_tokens: 24 };
    const { viaGateway, direct, requestId } = await throughBoth({ path: CHAT_PATH, body });
    expectSameBytes(viaGateway, direct);
    expect(viaGateway.headers.get('content-type') ?? '').toMatch(/^application\/json/);
    expect(viaGateway.headers.get('x-request-id')).toBe(requestId);
    expect(parseJson<{ id: string }>(viaGateway).id).toBe(`chatcmpl-${requestId}`);
    expect(upstreamRequestFor(relay.simulator, requestId).method).toBe('POST');
  });

  it('relays a chat stream byte for byte with SSE headers and strict `data:` framing', async () => {
    const body = { model: 'sim-llama-3-8b', messages: chatMessages('Stream a few words'), seed: 5, max_tokens: 30, stream: true };
    const { viaGateway, direct, requestId } = await throughBoth({ path: CHAT_PATH, body });
    expectSameBytes(viaGateway, direct);
    expectStreamHeaders(viaGateway);
    const events = sseData(viaGateway.text);
    expect(events.at(-1)).toBe('[DONE]');
    expect(viaGateway.text.endsWith('data: [DONE]\n\n')).toBe(true);
    const chunks = events.slice(0, -1).map((payload) => JSON.parse(payload) as ChunkShape);
    expect(chunks.length).toBeGreaterThan(2);
    for (const chunk of chunks) expect(chunk.id).toBe(`chatcmpl-${requestId}`);
    expect(viaGateway.headers.get('x-request-id')).toBe(requestId);
  });

  it('relays /v1/completions, non-streaming and streaming, byte for byte', async () => {
    const body = { model: 'sim-llama-3-8b', prompt: 'Once upon a time', seed: 3, max_tokens: 20 };
    const plain = await throughBoth({ path: COMPLETIONS_PATH, body });
    expectSameBytes(plain.viaGateway, plain.direct);
    expect(parseJson<{ id: string; object: string }>(plain.viaGateway)).toMatchObject({ id: `cmpl-${plain.requestId}`, object: 'text_completion' });

    const streamed = await throughBoth({ path: COMPLETIONS_PATH, body: { ...body, stream: true } });
    expectSameBytes(streamed.viaGateway, streamed.direct);
    expectStreamHeaders(streamed.viaGateway);
    expect(sseData(streamed.viaGateway.text).at(-1)).toBe('[DONE]');
  });

  it('relays n: 2 with its interleaved choices, streaming and not', async () => {
    const body = { model: 'sim-llama-3-8b', messages: chatMessages('Two answers please'), seed: 21, max_tokens: 12, n: 2 };
    const plain = await throughBoth({ path: CHAT_PATH, body });
    expectSameBytes(plain.viaGateway, plain.direct);
    expect(parseJson<ChunkShape>(plain.viaGateway).choices.map((choice) => choice.index)).toEqual([0, 1]);

    const streamed = await throughBoth({ path: CHAT_PATH, body: { ...body, stream: true } });
    expectSameBytes(streamed.viaGateway, streamed.direct);
    const indices = sseData(streamed.viaGateway.text)
      .slice(0, -1)
      .map((payload) => JSON.parse(payload) as ChunkShape)
      .flatMap((chunk) => chunk.choices.map((choice) => choice.index));
    // Interleaved: choice 0 appears again after choice 1 has started.
    expect(indices.indexOf(1)).toBeGreaterThan(-1);
    expect(indices.lastIndexOf(0)).toBeGreaterThan(indices.indexOf(1));
  });

  it('without an incoming X-Request-Id, sends its own request id upstream, which names the completion', async () => {
    const reply = await callGateway({
      url: relay.url,
      path: CHAT_PATH,
      body: { model: 'sim-llama-3-8b', messages: chatMessages('No id from me'), max_tokens: 4 },
      credential: caller.apiKey,
    });
    expect(reply.status, reply.text).toBe(200);
    const gatewayId = reply.headers.get('x-request-id') ?? '';
    expect(gatewayId.length).toBeGreaterThan(0);
    expect(parseJson<{ id: string }>(reply).id).toBe(`chatcmpl-${gatewayId}`);
    expect(upstreamRequestFor(relay.simulator, gatewayId).headers['x-request-id']).toBe(gatewayId);
  });

  it('replaces an ill-formed X-Request-Id and sends its own upstream', async () => {
    const illFormed = 'two words; and a semicolon';
    const reply = await callGateway({
      url: relay.url,
      path: CHAT_PATH,
      body: { model: 'sim-llama-3-8b', messages: chatMessages('Odd id'), max_tokens: 4 },
      credential: caller.apiKey,
      headers: { 'x-request-id': illFormed },
    });
    expect(reply.status, reply.text).toBe(200);
    const gatewayId = reply.headers.get('x-request-id') ?? '';
    expect(gatewayId).not.toBe(illFormed);
    expect(parseJson<{ id: string }>(reply).id).toBe(`chatcmpl-${gatewayId}`);
    expect(upstreamRequestFor(relay.simulator, gatewayId).headers['x-request-id']).toBe(gatewayId);
    expect(relay.simulator.received.some((entry) => entry.headers['x-request-id'] === illFormed)).toBe(false);
  });

  it('asks vLLM for usage on every stream but drops the usage chunk when the client did not ask', async () => {
    const body = { model: 'sim-llama-3-8b', messages: chatMessages('Count my tokens quietly'), seed: 8, max_tokens: 10, stream: true };
    const { viaGateway, direct, requestId } = await throughBoth({ path: CHAT_PATH, body });
    expectSameBytes(viaGateway, direct);
    expect(viaGateway.text).not.toContain('"usage"');
    const upstream = upstreamRequestFor(relay.simulator, requestId);
    expect(upstream.body.stream_options).toMatchObject({ include_usage: true });

    // Asking explicitly for no usage is the same as not asking.
    const declined = await throughBoth({ path: CHAT_PATH, body: { ...body, stream_options: { include_usage: false } } });
    expectSameBytes(declined.viaGateway, declined.direct);
    expect(declined.viaGateway.text).not.toContain('"usage"');
    expect(upstreamRequestFor(relay.simulator, declined.requestId).body.stream_options).toMatchObject({ include_usage: true });
  });

  it('forwards the usage chunk when the client asked for it', async () => {
    const body = {
      model: 'sim-llama-3-8b',
      messages: chatMessages('Count my tokens aloud'),
      seed: 9,
      max_tokens: 10,
      stream: true,
      stream_options: { include_usage: true },
    };
    const { viaGateway, direct, requestId } = await throughBoth({ path: CHAT_PATH, body });
    expectSameBytes(viaGateway, direct);
    const chunks = sseData(viaGateway.text)
      .slice(0, -1)
      .map((payload) => JSON.parse(payload) as ChunkShape);
    const usageChunk = chunks.at(-1)!;
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage?.completion_tokens).toBeGreaterThan(0);
    expect(upstreamRequestFor(relay.simulator, requestId).body.stream_options).toMatchObject({ include_usage: true });

    // The same for completions.
    const completion = await throughBoth({
      path: COMPLETIONS_PATH,
      body: { model: 'sim-llama-3-8b', prompt: 'Usage please', max_tokens: 6, stream: true, stream_options: { include_usage: true } },
    });
    expectSameBytes(completion.viaGateway, completion.direct);
    expect(completion.viaGateway.text).toContain('"choices":[],"usage":{');
  });
});
