// The simulator's tokenizer: /tokenize counts exactly what generation reports as prompt_tokens,
// and /detokenize gives back the exact text, multibyte characters included.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeTokens, encodeText, startSimulator, type Simulator } from '../../src/sim/index.js';
import { CHAT_PATH, COMPLETIONS_PATH, postJson } from './helpers.js';
import type { ChatCompletion, TextCompletion, TokenizeReply } from './shapes.js';

describe('simulated tokenizer', () => {
  let simulator: Simulator;

  beforeAll(async () => {
    simulator = await startSimulator({ models: [{ id: 'tok-model', maxModelLen: 2048 }, { id: 'tok-lora', maxModelLen: null, parent: 'tok-model' }] });
  });

  afterAll(async () => {
    await simulator.close();
  });

  it('reports usage.prompt_tokens equal to the /tokenize count of the same messages', async () => {
    const messages = [
      { role: 'system', content: 'You are helpful.' },
      { role: 'user', content: [{ type: 'text', text: 'Describe café culture 🙂' }, { type: 'text', text: '日本語でも' }] },
      { role: 'assistant', content: 'Sure.' },
      { role: 'user', content: 'Go on' },
    ];
    const tokenized = await postJson<TokenizeReply>({ url: `${simulator.url}/tokenize`, body: { model: 'tok-lora', messages } });
    expect(tokenized.status).toBe(200);
    expect(tokenized.json.max_model_len).toBe(2048);
    expect(tokenized.json.tokens).toHaveLength(tokenized.json.count);
    const chat = await postJson<ChatCompletion>({ url: `${simulator.url}${CHAT_PATH}`, body: { model: 'tok-lora', messages, max_tokens: 1 } });
    expect(chat.json.usage.prompt_tokens).toBe(tokenized.json.count);
    expect(chat.json.model).toBe('tok-lora');

    const prompt = 'A plain completion prompt, naïve';
    const tokenizedPrompt = await postJson<TokenizeReply>({ url: `${simulator.url}/tokenize`, body: { prompt } });
    const completion = await postJson<TextCompletion>({ url: `${simulator.url}${COMPLETIONS_PATH}`, body: { prompt, max_tokens: 1 } });
    expect(completion.json.usage!.prompt_tokens).toBe(tokenizedPrompt.json.count);
  });

  it('round-trips text through /tokenize and /detokenize, multibyte included', async () => {
    const text = 'Grüße, 日本語 and 🙂🚀 — ok';
    const tokenized = await postJson<TokenizeReply>({ url: `${simulator.url}/tokenize`, body: { prompt: text } });
    expect(tokenized.json.count).toBe(Math.ceil(Buffer.byteLength(text) / 3));
    const detokenized = await postJson<{ prompt: string }>({ url: `${simulator.url}/detokenize`, body: { tokens: tokenized.json.tokens } });
    expect(detokenized.json).toEqual({ prompt: text });
  });

  it('round-trips in process for every length remainder, and rejects impossible ids', () => {
    for (const text of ['', 'a', 'ab', 'abc', 'abcd', 'é', '🙂', 'x🙂y']) {
      expect(decodeTokens(encodeText(text))).toBe(text);
    }
    expect(decodeTokens([-1])).toBeNull();
    expect(decodeTokens([256])).toBeNull();
  });

  it('answers /detokenize with bad ids as 400 and /tokenize for an unknown model as 404', async () => {
    const bad = await postJson({ url: `${simulator.url}/detokenize`, body: { tokens: [999_999_999] } });
    expect(bad.status).toBe(400);
    const unknown = await postJson({ url: `${simulator.url}/tokenize`, body: { model: 'nope', prompt: 'x' } });
    expect(unknown.status).toBe(404);
  });
});
