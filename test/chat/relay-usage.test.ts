// Usage accounting for /v1: one usage_events row per request, written off the request path, with
// the tokens vLLM reported (for streams from the usage chunk, even when the client did not ask for
// it), who called with which key, and the request id the client saw.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import {
  CHAT_PATH,
  COMPLETIONS_PATH,
  callGateway,
  callSimulator,
  chatMessages,
  newCaller,
  newRequestId,
  sseData,
  startRelay,
  usageEventFor,
  usageEventsFor,
  type Caller,
  type Relay,
} from '../helpers/relay-fixtures.js';

interface UsageBody {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

describe.each(backends)('relay usage events (%s)', (backend) => {
  let relay: Relay;
  let caller: Caller;

  beforeAll(async () => {
    relay = await startRelay({ backend, simulator: { interTokenMs: 2 } });
    caller = await newCaller(relay.app);
  });

  afterAll(async () => {
    await relay.close();
  });

  it('records a non-streaming chat call with an API key: vLLM’s usage, the key, the request id', async () => {
    const startedAt = Date.now();
    const reply = await callGateway({
      url: relay.url,
      path: CHAT_PATH,
      body: { model: 'sim-llama-3-8b', messages: chatMessages('Account for me'), seed: 3, max_tokens: 30 },
      credential: caller.apiKey,
    });
    expect(reply.status, reply.text).toBe(200);
    const requestId = reply.headers.get('x-request-id')!;
    const answer = JSON.parse(reply.text) as { usage: UsageBody; choices: Array<{ finish_reason: string }> };

    const event = await usageEventFor(relay.app, requestId);
    expect(event).toMatchObject({
      user_id: caller.userId,
      api_key_id: caller.apiKeyId,
      endpoint: 'chat.completions',
      model: 'sim-llama-3-8b',
      stream: false,
      status: 'ok',
      finish_reason: answer.choices[0]!.finish_reason,
      prompt_tokens: answer.usage.prompt_tokens,
      completion_tokens: answer.usage.completion_tokens,
      usage_estimated: false,
      request_id: requestId,
    });
    expect(event.created_at).toBeInstanceOf(Date);
    expect(event.created_at.getTime()).toBeGreaterThanOrEqual(startedAt - 5000);
    expect(event.duration_ms).toEqual(expect.any(Number));
    expect(event.duration_ms).toBeGreaterThanOrEqual(0);
  });

  it('records a stream’s usage from vLLM’s usage chunk even when the client did not ask for it', async () => {
    const requestId = newRequestId();
    const body = { model: 'sim-llama-3-8b', messages: chatMessages('Stream and count'), seed: 4, max_tokens: 25, stream: true };
    const reply = await callGateway({ url: relay.url, path: CHAT_PATH, body, credential: caller.apiKey, headers: { 'x-request-id': requestId } });
    expect(reply.status, reply.text).toBe(200);
    expect(reply.text).not.toContain('"usage"');
    // What vLLM reported upstream: the same request with include_usage, straight to the simulator.
    const direct = await callSimulator({ simulator: relay.simulator, path: CHAT_PATH, body: { ...body, stream_options: { include_usage: true } }, requestId });
    const usageChunk = JSON.parse(sseData(direct.text).at(-2)!) as { usage: UsageBody };

    const event = await usageEventFor(relay.app, requestId);
    expect(event).toMatchObject({
      user_id: caller.userId,
      api_key_id: caller.apiKeyId,
      endpoint: 'chat.completions',
      stream: true,
      status: 'ok',
      prompt_tokens: usageChunk.usage.prompt_tokens,
      completion_tokens: usageChunk.usage.completion_tokens,
      usage_estimated: false,
      request_id: requestId,
    });
    expect(['stop', 'length']).toContain(event.finish_reason);
    expect(event.ttft_ms).toEqual(expect.any(Number));
    expect(event.ttft_ms).toBeGreaterThanOrEqual(0);
    expect(event.duration_ms).toBeGreaterThanOrEqual(event.ttft_ms!);
  });

  it('records a completions stream whose client asked for usage, once', async () => {
    const requestId = newRequestId();
    const reply = await callGateway({
      url: relay.url,
      path: COMPLETIONS_PATH,
      body: { model: 'sim-llama-3-8b', prompt: 'Tell me', max_tokens: 9, stream: true, stream_options: { include_usage: true } },
      credential: caller.apiKey,
      headers: { 'x-request-id': requestId },
    });
    expect(reply.status, reply.text).toBe(200);
    const usageChunk = JSON.parse(sseData(reply.text).at(-2)!) as { usage: UsageBody };
    const event = await usageEventFor(relay.app, requestId);
    expect(event).toMatchObject({
      endpoint: 'completions',
      stream: true,
      status: 'ok',
      finish_reason: 'length',
      prompt_tokens: usageChunk.usage.prompt_tokens,
      completion_tokens: 9,
      usage_estimated: false,
    });
    expect(await usageEventsFor(relay.app, requestId)).toHaveLength(1);
  });

  it('records a call with an access token with api_key_id null', async () => {
    const requestId = newRequestId();
    const reply = await callGateway({
      url: relay.url,
      path: COMPLETIONS_PATH,
      body: { model: 'sim-llama-3-8b', prompt: 'Hello', max_tokens: 5 },
      credential: caller.accessToken,
      headers: { 'x-request-id': requestId },
    });
    expect(reply.status, reply.text).toBe(200);
    const answer = JSON.parse(reply.text) as { usage: UsageBody };
    const event = await usageEventFor(relay.app, requestId);
    expect(event).toMatchObject({
      user_id: caller.userId,
      api_key_id: null,
      endpoint: 'completions',
      stream: false,
      status: 'ok',
      prompt_tokens: answer.usage.prompt_tokens,
      completion_tokens: 5,
    });
  });

  it('keeps each user’s rows apart', async () => {
    const other = await newCaller(relay.app);
    const requestId = newRequestId();
    const reply = await callGateway({
      url: relay.url,
      path: CHAT_PATH,
      body: { model: 'sim-llama-3-8b', messages: chatMessages('Mine'), max_tokens: 3 },
      credential: other.apiKey,
      headers: { 'x-request-id': requestId },
    });
    expect(reply.status, reply.text).toBe(200);
    const event = await usageEventFor(relay.app, requestId);
    expect(event.user_id).toBe(other.userId);
    expect(event.api_key_id).toBe(other.apiKeyId);
    expect(event.user_id).not.toBe(caller.userId);
  });

  it('records failed calls with their status: upstream_error for a vLLM 500, client_error for an unknown model', async () => {
    const failedId = newRequestId();
    const failed = await callGateway({
      url: relay.url,
      path: CHAT_PATH,
      body: { model: 'sim-llama-3-8b', messages: chatMessages('fail'), sim_fault: { status: 500 } },
      credential: caller.apiKey,
      headers: { 'x-request-id': failedId },
    });
    expect(failed.status).toBe(502);
    expect(await usageEventFor(relay.app, failedId)).toMatchObject({ status: 'upstream_error', user_id: caller.userId });

    const unknownId = newRequestId();
    const unknown = await callGateway({
      url: relay.url,
      path: CHAT_PATH,
      body: { model: 'no-such-model', messages: chatMessages('who?') },
      credential: caller.apiKey,
      headers: { 'x-request-id': unknownId },
    });
    expect(unknown.status).toBe(404);
    expect(await usageEventFor(relay.app, unknownId)).toMatchObject({ status: 'client_error', user_id: caller.userId });
  });
});
