// /v1/chat/completions on the simulator: response and stream shapes byte for byte as vLLM sends
// them, usage options, n, max_tokens, stop, seeds and request ids.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/sim/index.js';
import { CHAT_PATH, postJson, sseData, sseJsonEvents, userMessage } from './helpers.js';
import type { ChatChunk, ChatCompletion } from './shapes.js';

describe('simulated chat completions', () => {
  let simulator: Simulator;
  let chatUrl: string;

  beforeAll(async () => {
    simulator = await startSimulator({ created: 1760000000, models: [{ id: 'sim-model', maxModelLen: 512 }] });
    chatUrl = `${simulator.url}${CHAT_PATH}`;
  });

  afterAll(async () => {
    await simulator.close();
  });

  it('answers a non-streaming request with vLLM body keys, in order, and consistent usage', async () => {
    const reply = await postJson<ChatCompletion>({ url: chatUrl, body: { model: 'sim-model', messages: userMessage('Hello there') } });
    expect(reply.status).toBe(200);
    expect(reply.headers.get('content-type')).toBe('application/json');
    expect(Object.keys(reply.json)).toEqual([
      'id', 'object', 'created', 'model', 'choices', 'service_tier', 'system_fingerprint', 'usage',
      'prompt_logprobs', 'prompt_token_ids', 'kv_transfer_params',
    ]);
    expect(reply.json.id).toMatch(/^chatcmpl-[0-9a-f]{32}$/);
    expect(reply.json).toMatchObject({ object: 'chat.completion', created: 1760000000, model: 'sim-model' });
    const choice = reply.json.choices[0]!;
    expect(Object.keys(choice)).toEqual(['index', 'message', 'logprobs', 'finish_reason', 'stop_reason', 'token_ids']);
    expect(Object.keys(choice.message)).toEqual(['role', 'content', 'refusal', 'annotations', 'audio', 'function_call', 'tool_calls', 'reasoning']);
    expect(choice).toMatchObject({ index: 0, finish_reason: 'stop', stop_reason: null, message: { role: 'assistant', tool_calls: [] } });
    expect(choice.message.content.length).toBeGreaterThan(0);
    const usage = reply.json.usage;
    expect(Object.keys(usage)).toEqual(['prompt_tokens', 'total_tokens', 'completion_tokens', 'prompt_tokens_details']);
    expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
    // The natural end is an end-of-sequence token after 8 to 40 tokens.
    expect(usage.completion_tokens).toBeGreaterThanOrEqual(8);
    expect(usage.completion_tokens).toBeLessThanOrEqual(40);
  });

  it('streams role chunk, one chunk per token, one finish chunk and [DONE], with exact framing', async () => {
    const response = await fetch(chatUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: userMessage('Stream please'), stream: true, max_tokens: 5 }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const body = await response.text();
    expect(body).toMatch(/^(data: [^\n]+\n\n)+$/);
    expect(body.endsWith('data: [DONE]\n\n')).toBe(true);
    const events = sseJsonEvents<ChatChunk>(body);
    expect(events).toHaveLength(1 + 5);
    const [roleChunk, ...tokenChunks] = events;
    expect(sseData(body)[0]).toBe(
      `{"id":"${roleChunk!.id}","object":"chat.completion.chunk","created":1760000000,"model":"sim-model","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"prompt_token_ids":null}`,
    );
    expect(new Set(events.map((event) => event.id)).size).toBe(1);
    expect(new Set(events.map((event) => event.created)).size).toBe(1);
    for (const chunk of tokenChunks.slice(0, -1)) {
      expect(chunk.choices[0]).toMatchObject({ index: 0, finish_reason: null });
      expect(chunk.choices[0]!.delta.content).toMatch(/^ \S+$/);
      expect(chunk.usage).toBeUndefined();
    }
    const finish = tokenChunks.at(-1)!;
    expect(finish.choices[0]).toMatchObject({ finish_reason: 'length', stop_reason: null });
    expect(sseData(body)[5]).toContain('"finish_reason":"length","stop_reason":null,"token_ids":null}]}');
    expect(events.filter((event) => event.choices.some((choice) => choice.finish_reason !== null))).toHaveLength(1);
  });

  it('sends the usage chunk only with include_usage, and none for stream_options: {}', async () => {
    const withUsage = await postJson({ url: chatUrl, body: { messages: userMessage('u'), stream: true, max_tokens: 3, stream_options: { include_usage: true } } });
    const events = sseJsonEvents<ChatChunk>(withUsage.text);
    const usageChunk = events.at(-1)!;
    expect(sseData(withUsage.text).at(-2)).toBe(
      `{"id":"${usageChunk.id}","object":"chat.completion.chunk","created":1760000000,"model":"sim-model","choices":[],"usage":{"prompt_tokens":${usageChunk.usage!.prompt_tokens},"total_tokens":${usageChunk.usage!.prompt_tokens + 3},"completion_tokens":3}}`,
    );
    expect(events.slice(0, -1).every((event) => event.usage === undefined)).toBe(true);

    const emptyOptions = await postJson({ url: chatUrl, body: { messages: userMessage('u'), stream: true, max_tokens: 3, stream_options: {} } });
    expect(sseJsonEvents<ChatChunk>(emptyOptions.text).some((event) => event.usage !== undefined || event.choices.length === 0)).toBe(false);
  });

  it('adds cumulative usage to every chunk with continuous_usage_stats', async () => {
    const reply = await postJson({
      url: chatUrl,
      body: { messages: userMessage('c'), stream: true, max_tokens: 4, stream_options: { include_usage: true, continuous_usage_stats: true } },
    });
    const events = sseJsonEvents<ChatChunk>(reply.text);
    expect(events.map((event) => event.usage?.completion_tokens)).toEqual([0, 1, 2, 3, 4, 4]);
    const promptTokens = events[0]!.usage!.prompt_tokens;
    expect(events.every((event) => event.usage!.total_tokens === promptTokens + event.usage!.completion_tokens)).toBe(true);
  });

  it('rejects stream_options without stream with 400 and param stream_options', async () => {
    const reply = await postJson({ url: chatUrl, body: { messages: userMessage('x'), stream_options: { include_usage: true } } });
    expect(reply.status).toBe(400);
    expect(reply.json).toMatchObject({ error: { type: 'BadRequestError', param: 'stream_options', code: 400 } });
  });

  it('answers an unknown model with a 404 JSON envelope, also when streaming', async () => {
    for (const stream of [false, true]) {
      const reply = await postJson({ url: chatUrl, body: { model: 'missing', messages: userMessage('x'), stream } });
      expect(reply.status).toBe(404);
      expect(reply.headers.get('content-type')).toBe('application/json');
      expect(reply.json).toEqual({ error: { message: 'The model `missing` does not exist.', type: 'NotFoundError', param: 'model', code: 404 } });
    }
  });

  it('answers 400 "context length" when the prompt or max_tokens does not fit', async () => {
    const longPrompt = await postJson({ url: chatUrl, body: { messages: userMessage('x'.repeat(2000)), stream: true } });
    expect(longPrompt.status).toBe(400);
    expect(longPrompt.json).toMatchObject({ error: { type: 'BadRequestError', param: 'input_tokens', message: expect.stringContaining('context length') } });
    const tooManyTokens = await postJson({ url: chatUrl, body: { messages: userMessage('x'), max_completion_tokens: 510 } });
    expect(tooManyTokens.status).toBe(400);
    expect(tooManyTokens.json).toMatchObject({ error: { param: 'max_completion_tokens', message: expect.stringContaining('maximum context length is 512 tokens') } });
  });

  it('rejects schema errors with 400 "Bad Request" and a body.<field> param, ignoring unknown fields', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ temperature: 'hot' }, 'body.temperature'],
      [{ temperature: -0.5 }, 'body.temperature'],
      [{ n: 0 }, 'body.n'],
      [{ max_tokens: 0 }, 'body.max_tokens'],
      [{ messages: 'hello' }, 'body.messages'],
    ];
    for (const [fields, param] of cases) {
      const reply = await postJson({ url: chatUrl, body: { messages: userMessage('x'), ...fields } });
      expect(reply.status, param).toBe(400);
      expect(reply.json).toMatchObject({ error: { type: 'Bad Request', param, code: 400 } });
    }
    const unknownFields = await postJson({ url: chatUrl, body: { messages: [{ role: 'user', content: 'x', extra: 1 }], max_tokens: 1, top_k: 5, whatever: { a: 1 } } });
    expect(unknownFields.status).toBe(200);
  });

  it('rejects a body that is not JSON (400) or not application/json (415)', async () => {
    const notJson = await postJson({ url: chatUrl, body: '{"messages": [' });
    expect(notJson.status).toBe(400);
    const wrongType = await fetch(chatUrl, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' });
    expect(wrongType.status).toBe(415);
    expect(await wrongType.json()).toMatchObject({ error: { code: 415 } });
  });

  it('interleaves n=2 choices, one choice per chunk tagged by index, each with its own finish chunk', async () => {
    const reply = await postJson({ url: chatUrl, body: { messages: userMessage('two'), stream: true, n: 2, max_tokens: 3 } });
    const events = sseJsonEvents<ChatChunk>(reply.text);
    expect(events.every((event) => event.choices.length === 1)).toBe(true);
    expect(events.map((event) => event.choices[0]!.index)).toEqual([0, 1, 0, 1, 0, 1, 0, 1]);
    expect(events.slice(0, 2).map((event) => event.choices[0]!.delta.role)).toEqual(['assistant', 'assistant']);
    const finishes = events.filter((event) => event.choices[0]!.finish_reason !== null).map((event) => event.choices[0]!.index);
    expect(finishes).toEqual([0, 1]);
  });

  it('finishes with length at max_tokens and counts completion tokens', async () => {
    const reply = await postJson<ChatCompletion>({ url: chatUrl, body: { messages: userMessage('len'), max_tokens: 6 } });
    expect(reply.json.choices[0]).toMatchObject({ finish_reason: 'length', stop_reason: null });
    expect(reply.json.usage.completion_tokens).toBe(6);
    expect(reply.json.choices[0]!.message.content.split(' ').length - 1).toBe(6);
  });

  it('stops before a stop string, reporting it as stop_reason and never sending it', async () => {
    const body = { messages: userMessage('stop test'), seed: 7, ignore_eos: true, max_tokens: 30 };
    const free = await postJson<ChatCompletion>({ url: chatUrl, body });
    const words = free.json.choices[0]!.message.content.split(' ');
    const stop = ` ${words[4]} ${words[5]}`;
    const cutAt = free.json.choices[0]!.message.content.indexOf(stop);
    const stopped = await postJson({ url: chatUrl, body: { ...body, stop: ['never-matches', stop], stream: true } });
    const events = sseJsonEvents<ChatChunk>(stopped.text);
    const text = events.map((event) => event.choices[0]!.delta.content ?? '').join('');
    expect(text).toBe(free.json.choices[0]!.message.content.slice(0, cutAt));
    expect(text).not.toContain(stop);
    expect(events.at(-1)!.choices[0]).toMatchObject({ finish_reason: 'stop', stop_reason: stop });
  });

  it('is deterministic: the same seed and prompt give the same text, another seed another text', async () => {
    const ask = async (seed: number): Promise<string> =>
      (await postJson<ChatCompletion>({ url: chatUrl, body: { messages: userMessage('determinism'), seed, max_tokens: 20 } })).json.choices[0]!.message.content;
    expect(await ask(42)).toBe(await ask(42));
    expect(await ask(42)).not.toBe(await ask(43));
  });

  it('uses X-Request-Id for the id, so identical requests give identical bytes', async () => {
    const send = () =>
      postJson({ url: chatUrl, body: { messages: userMessage('same bytes'), stream: true }, headers: { 'x-request-id': 'req-123' } });
    const first = await send();
    const second = await send();
    expect(sseJsonEvents<ChatChunk>(first.text)[0]!.id).toBe('chatcmpl-req-123');
    expect(first.text).toBe(second.text);
  });

  it('contains multibyte words somewhere in its output', async () => {
    const reply = await postJson<ChatCompletion>({ url: chatUrl, body: { messages: userMessage('unicode'), ignore_eos: true, max_tokens: 300 } });
    expect(Buffer.byteLength(reply.json.choices[0]!.message.content)).toBeGreaterThan(reply.json.choices[0]!.message.content.length);
  });

  it('answers in the flat pre-0.10.1 error format when configured', async () => {
    const flat = await startSimulator({ errorFormat: 'flat' });
    try {
      const reply = await postJson({ url: `${flat.url}${CHAT_PATH}`, body: { model: 'nope', messages: userMessage('x') } });
      expect(reply.json).toEqual({ object: 'error', message: 'The model `nope` does not exist.', type: 'NotFoundError', param: 'model', code: 404 });
    } finally {
      await flat.close();
    }
  });
});
