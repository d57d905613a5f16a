// /v1/completions on the simulator: text_completion bodies and chunks (every key present, usage
// null until the usage chunk, no role chunk) and the default of 16 tokens.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/sim/index.js';
import { COMPLETIONS_PATH, postJson, sseData, sseJsonEvents } from './helpers.js';
import type { TextCompletion } from './shapes.js';

describe('simulated completions', () => {
  let simulator: Simulator;
  let completionsUrl: string;

  beforeAll(async () => {
    simulator = await startSimulator({ created: 1760000000 });
    completionsUrl = `${simulator.url}${COMPLETIONS_PATH}`;
  });

  afterAll(async () => {
    await simulator.close();
  });

  it('answers a non-streaming request with the text_completion body, 16 tokens by default', async () => {
    const reply = await postJson<TextCompletion>({ url: completionsUrl, body: { prompt: 'Once upon a time', ignore_eos: true } });
    expect(reply.status).toBe(200);
    expect(Object.keys(reply.json)).toEqual(['id', 'object', 'created', 'model', 'choices', 'service_tier', 'system_fingerprint', 'usage', 'kv_transfer_params']);
    expect(reply.json.id).toMatch(/^cmpl-[0-9a-f]{32}$/);
    expect(reply.json).toMatchObject({ object: 'text_completion', model: 'sim-llama-3-8b', created: 1760000000 });
    const choice = reply.json.choices[0]!;
    expect(Object.keys(choice)).toEqual(['index', 'text', 'logprobs', 'finish_reason', 'stop_reason', 'token_ids', 'prompt_logprobs', 'prompt_token_ids']);
    expect(choice.finish_reason).toBe('length');
    expect(reply.json.usage).toEqual({ prompt_tokens: 6, total_tokens: 22, completion_tokens: 16, prompt_tokens_details: null });
  });

  it('streams text chunks with "usage": null, no role chunk, then the usage chunk and [DONE]', async () => {
    const reply = await postJson({
      url: completionsUrl,
      body: { prompt: 'abc', stream: true, max_tokens: 3, stream_options: { include_usage: true } },
      headers: { 'x-request-id': 'fixed' },
    });
    expect(reply.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const data = sseData(reply.text);
    const events = sseJsonEvents<TextCompletion>(reply.text);
    expect(events).toHaveLength(4);
    expect(data[0]).toBe(
      `{"id":"cmpl-fixed","object":"text_completion","created":1760000000,"model":"sim-llama-3-8b","choices":[{"index":0,"text":${JSON.stringify(events[0]!.choices[0]!.text)},"logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}],"usage":null}`,
    );
    expect(events[2]!.choices[0]).toMatchObject({ finish_reason: 'length', stop_reason: null });
    expect(data[3]).toBe('{"id":"cmpl-fixed","object":"text_completion","created":1760000000,"model":"sim-llama-3-8b","choices":[],"usage":{"prompt_tokens":1,"total_tokens":4,"completion_tokens":3}}');
  });

  it('accepts token-id prompts and several prompts, numbering choices per prompt', async () => {
    const reply = await postJson<TextCompletion>({ url: completionsUrl, body: { prompt: ['first', 'second one'], n: 2, max_tokens: 2 } });
    expect(reply.json.choices.map((choice) => choice.index)).toEqual([0, 1, 2, 3]);
    expect(reply.json.usage!.prompt_tokens).toBe(2 + 4);
    const tokens = await postJson<TextCompletion>({ url: completionsUrl, body: { prompt: [1, 2, 3, 4, 5], max_tokens: 1 } });
    expect(tokens.json.usage!.prompt_tokens).toBe(5);
  });

  it('rejects an empty prompt and a default of 16 tokens that does not fit', async () => {
    const empty = await postJson({ url: completionsUrl, body: { prompt: '' } });
    expect(empty.status).toBe(400);
    const small = await startSimulator({ models: [{ id: 'tiny', maxModelLen: 20 }] });
    try {
      const reply = await postJson({ url: `${small.url}${COMPLETIONS_PATH}`, body: { prompt: 'x'.repeat(15) } });
      expect(reply.status).toBe(400);
      expect(reply.json).toMatchObject({ error: { param: 'max_tokens', message: expect.stringContaining('context length') } });
    } finally {
      await small.close();
    }
  });
});
