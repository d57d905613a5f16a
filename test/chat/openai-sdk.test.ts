// The `openai` SDK pointed at /v1 with an API key, end to end: completions, streams (with SSE
// heartbeats while vLLM thinks), the model list, and errors turned into the SDK's typed classes.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHAT_PATH,
  callGateway,
  callSimulator,
  chatMessages,
  newCaller,
  newRequestId,
  sseData,
  sseFrames,
  startRelay,
  withoutComments,
  type Caller,
  type Relay,
} from '../helpers/relay-fixtures.js';

const HEARTBEAT_MS = 100;

describe('the openai SDK against /v1', () => {
  let relay: Relay;
  let caller: Caller;
  let client: OpenAI;

  beforeAll(async () => {
    relay = await startRelay({
      backend: 'embedded',
      environment: { SSE_HEARTBEAT_MS: String(HEARTBEAT_MS) },
      simulator: {
        models: [
          { id: 'sim-llama-3-8b', maxModelLen: 8192 },
          { id: 'sim-lora-sql', maxModelLen: null, parent: 'sim-llama-3-8b' },
        ],
      },
    });
    caller = await newCaller(relay.app);
    client = new OpenAI({ baseURL: `${relay.url}/v1`, apiKey: caller.apiKey, maxRetries: 0 });
  });

  afterAll(async () => {
    await relay.close();
  });

  const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Describe the gateway in a few words.' },
  ];

  it('chat.completions.create returns the content and the usage', async () => {
    const completion = await client.chat.completions.create({ model: 'sim-llama-3-8b', messages, seed: 42, max_tokens: 30 });
    expect(completion.object).toBe('chat.completion');
    expect(completion.id).toMatch(/^chatcmpl-/);
    const content = completion.choices[0]?.message.content;
    expect(typeof content).toBe('string');
    expect(content!.length).toBeGreaterThan(0);
    expect(completion.usage?.prompt_tokens).toBeGreaterThan(0);
    expect(completion.usage?.completion_tokens).toBeGreaterThan(0);
    expect(completion.usage?.total_tokens).toBe(completion.usage!.prompt_tokens + completion.usage!.completion_tokens);
  });

  it('streams deltas that add up to the non-streaming answer with the same seed, across heartbeats', async () => {
    const whole = await client.chat.completions.create({ model: 'sim-llama-3-8b', messages, seed: 7, max_tokens: 30 });
    // vLLM thinks for a while first, so the gateway sends heartbeats the SDK must skip.
    relay.simulator.update({ timeToFirstTokenMs: 4 * HEARTBEAT_MS });
    try {
      const stream = await client.chat.completions.create({
        model: 'sim-llama-3-8b',
        messages,
        seed: 7,
        max_tokens: 30,
        stream: true,
        stream_options: { include_usage: true },
      });
      let text = '';
      let finishReason: string | null = null;
      let usage: OpenAI.CompletionUsage | null | undefined;
      for await (const chunk of stream) {
        for (const choice of chunk.choices) {
          text += choice.delta.content ?? '';
          finishReason = choice.finish_reason ?? finishReason;
        }
        if (chunk.usage) usage = chunk.usage;
      }
      expect(text).toBe(whole.choices[0]!.message.content);
      expect(finishReason).toBe(whole.choices[0]!.finish_reason);
      expect(usage).toMatchObject({ prompt_tokens: whole.usage!.prompt_tokens, completion_tokens: whole.usage!.completion_tokens });
    } finally {
      relay.simulator.update({ timeToFirstTokenMs: 0 });
    }
  });

  it('completions.create works, streaming and not', async () => {
    const whole = await client.completions.create({ model: 'sim-llama-3-8b', prompt: 'The gateway', seed: 5, max_tokens: 12 });
    expect(whole.object).toBe('text_completion');
    expect(whole.choices[0]?.text.length).toBeGreaterThan(0);
    // At most max_tokens: the simulated model may end its text sooner, as a real one does.
    expect(whole.usage?.completion_tokens).toBeGreaterThan(0);
    expect(whole.usage?.completion_tokens).toBeLessThanOrEqual(12);
    const stream = await client.completions.create({ model: 'sim-llama-3-8b', prompt: 'The gateway', seed: 5, max_tokens: 12, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe(whole.choices[0]!.text);
  });

  it('models.list includes the served models with max_model_len, and LoRA adapters with parent', async () => {
    const models: Array<Record<string, unknown>> = [];
    for await (const model of client.models.list()) models.push(model as unknown as Record<string, unknown>);
    expect(models.find((model) => model.id === 'sim-llama-3-8b')).toMatchObject({ object: 'model', max_model_len: 8192, parent: null });
    expect(models.find((model) => model.id === 'sim-lora-sql')).toMatchObject({ object: 'model', parent: 'sim-llama-3-8b' });
  });

  it('turns an unknown model into OpenAI.NotFoundError carrying the gateway’s request id', async () => {
    const requestId = newRequestId();
    const failure = await client.chat.completions
      .create({ model: 'no-such-model', messages }, { headers: { 'x-request-id': requestId } })
      .then(() => null, (error: unknown) => error);
    expect(failure).toBeInstanceOf(OpenAI.NotFoundError);
    const notFound = failure as InstanceType<typeof OpenAI.NotFoundError>;
    expect(notFound.status).toBe(404);
    expect(notFound.requestID).toBe(requestId);
    expect(notFound.code).toBe('model_not_found');
    expect(notFound.type).toBe('not_found_error');

    // A stream request fails the same way, before any event.
    const streamFailure = await client.chat.completions
      .create({ model: 'no-such-model', messages, stream: true })
      .then(() => null, (error: unknown) => error);
    expect(streamFailure).toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('turns a wrong key into OpenAI.AuthenticationError', async () => {
    const stranger = new OpenAI({ baseURL: `${relay.url}/v1`, apiKey: 'vcg_not-a-real-key-at-all-0123456789', maxRetries: 0 });
    const failure = await stranger.chat.completions.create({ model: 'sim-llama-3-8b', messages }).then(
      () => null,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((failure as InstanceType<typeof OpenAI.AuthenticationError>).status).toBe(401);
    const listFailure = await stranger.models.list().then(
      () => null,
      (error: unknown) => error,
    );
    expect(listFailure).toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('sends SSE comment heartbeats before the first token, and otherwise the same events', async () => {
    relay.simulator.update({ timeToFirstTokenMs: 5 * HEARTBEAT_MS });
    try {
      const requestId = newRequestId();
      const body = { model: 'sim-llama-3-8b', messages: chatMessages('Think first'), seed: 12, max_tokens: 8, stream: true };
      const reply = await callGateway({ url: relay.url, path: CHAT_PATH, body, credential: caller.apiKey, headers: { 'x-request-id': requestId } });
      expect(reply.status, reply.text).toBe(200);
      const frames = sseFrames(reply.text);
      const firstData = frames.findIndex((frame) => frame.startsWith('data: '));
      expect(firstData).toBeGreaterThan(0);
      // Every frame before the first event is a comment line: `: …\n\n`.
      for (const frame of frames.slice(0, firstData)) expect(frame).toMatch(/^:[^\n]*$/);

      relay.simulator.update({ timeToFirstTokenMs: 0 });
      const direct = await callSimulator({ simulator: relay.simulator, path: CHAT_PATH, body, requestId });
      expect(withoutComments(reply.text)).toBe(direct.text);
      expect(sseData(withoutComments(reply.text)).at(-1)).toBe('[DONE]');
    } finally {
      relay.simulator.update({ timeToFirstTokenMs: 0 });
    }
  });
});
