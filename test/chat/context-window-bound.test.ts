// fitToContext asks vLLM's tokenizer only when the prompt's byte count (a bound no tokenizer
// exceeds) does not already prove that it fits.
import { describe, expect, it } from 'vitest';
import { fitToContext, tokenUpperBound, type ChatMessage } from '../../src/chat/context-window.js';

function fitWithCounter(input: { history: ChatMessage[]; newMessages: ChatMessage[]; maxModelLength: number; reservedForAnswer: number; realCount: number }) {
  const asked: ChatMessage[][] = [];
  const result = fitToContext({
    leading: [],
    history: input.history,
    newMessages: input.newMessages,
    maxModelLength: input.maxModelLength,
    reservedForAnswer: input.reservedForAnswer,
    countTokens: (messages) => {
      asked.push(messages);
      return Promise.resolve(input.realCount);
    },
  });
  return { result, asked };
}

describe('context window: the byte bound', () => {
  it('bounds text by its UTF-8 bytes plus template room, and gives up on content that is not text', () => {
    expect(tokenUpperBound([{ role: 'user', content: 'héllo' }])).toBe(512 + 6 + 16);
    // Tool calls, names and reasoning are rendered by the template too: their size is not bounded here.
    expect(tokenUpperBound([{ role: 'assistant', content: '', tool_calls: [{ id: 'call-1', type: 'function', function: { name: 'f', arguments: '{}' } }] }])).toBeNull();
    expect(tokenUpperBound([{ role: 'user', content: 'hi', name: 'ada' }])).toBeNull();
    expect(tokenUpperBound([{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }] }])).toBeNull();
  });

  it('sends a short turn without asking the tokenizer', async () => {
    const { result, asked } = fitWithCounter({ history: [{ role: 'user', content: 'earlier' }, { role: 'assistant', content: 'reply' }], newMessages: [{ role: 'user', content: 'hi' }], maxModelLength: 8192, reservedForAnswer: 512, realCount: 99_999 });
    const fitted = await result;
    expect(asked).toHaveLength(0);
    expect(fitted.messages).toHaveLength(3);
    expect(fitted.droppedMessages).toBe(0);
  });

  it('asks the tokenizer when the bound does not prove the prompt fits, and trims by its answer', async () => {
    const long = 'x'.repeat(3000);
    const { result, asked } = fitWithCounter({ history: [{ role: 'user', content: long }, { role: 'assistant', content: long }], newMessages: [{ role: 'user', content: 'hi' }], maxModelLength: 4096, reservedForAnswer: 512, realCount: 500 });
    const fitted = await result;
    expect(asked.length).toBeGreaterThan(0);
    expect(fitted.messages).toHaveLength(3);
    expect(fitted.promptTokens).toBe(500);
  });

  it('asks the tokenizer for content that is not text, however short', async () => {
    const { result, asked } = fitWithCounter({ history: [], newMessages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }], maxModelLength: 8192, reservedForAnswer: 16, realCount: 10 });
    await result;
    expect(asked).toHaveLength(1);
  });
});
