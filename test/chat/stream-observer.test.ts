// The stream observer reads each relayed event on the side. vLLM's usual event (one `data:` line)
// takes a fast path; every other shape takes the general one. Both must read events the same way.
import { describe, expect, it } from 'vitest';
import { StreamObserver } from '../../src/chat/stream-observer.js';

const chunk = (fields: Record<string, unknown>) => JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', model: 'sim-model', ...fields });
const contentChunk = (content: string, finishReason: string | null = null) => chunk({ choices: [{ index: 0, delta: { content }, finish_reason: finishReason }] });

function observe(events: string[]) {
  const observer = new StreamObserver({ collectText: true });
  const kinds = events.map((event) => observer.inspect(Buffer.from(event, 'utf8')));
  return { observer, kinds };
}

describe('StreamObserver', () => {
  it('reads one-line events (the fast path) and counts output, text, model, finish reason and usage', () => {
    const { observer, kinds } = observe([
      `data: ${contentChunk('Hé')}\n\n`,
      `data: ${contentChunk('llo', 'stop')}\n\n`,
      `data: ${chunk({ choices: [], usage: { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 } })}\n\n`,
      'data: [DONE]\n\n',
    ]);
    expect(kinds).toEqual(['data', 'data', 'usage_only', 'done']);
    expect(observer.text).toBe('Héllo');
    expect(observer.outputEvents).toBe(2);
    expect(observer.model).toBe('sim-model');
    expect(observer.finishReason).toBe('stop');
    expect(observer.usage).toEqual({ prompt_tokens: 7, completion_tokens: 2 });
  });

  it('takes no usage that is not whole, non-negative token counts (it would be charged to a quota)', () => {
    for (const usage of [
      { prompt_tokens: 7.5, completion_tokens: 2 },
      { prompt_tokens: 7, completion_tokens: -1 },
      { prompt_tokens: 1e300, completion_tokens: 2 },
      { prompt_tokens: '7', completion_tokens: 2 },
    ]) {
      const { observer } = observe([`data: ${chunk({ choices: [], usage })}\n\n`]);
      expect(observer.usage, JSON.stringify(usage)).toBeNull();
    }
  });

  it('reads the same events written in every other SSE shape (the general path) the same way', () => {
    const json = contentChunk('same');
    const shapes = [
      `data: ${json}\n\n`,
      `data:${json}\n\n`,
      `data: ${json}\r\n\r\n`,
      `id: 4\ndata: ${json}\n\n`,
    ];
    for (const shape of shapes) {
      const { observer, kinds } = observe([shape]);
      expect(kinds, JSON.stringify(shape)).toEqual(['data']);
      expect(observer.text).toBe('same');
    }
    // Two data lines are joined with a newline, as the SSE standard says; JSON tolerates it between tokens.
    const split = observe([`data: {"choices":[{"index":0,"delta":{"content":"two"}}],\ndata: "model":"m"}\n\n`]);
    expect(split.kinds).toEqual(['data']);
    expect(split.observer.text).toBe('two');
  });

  it('tells comments, malformed JSON, non-objects and vLLM error events apart on both paths', () => {
    expect(observe([': heartbeat\n\n']).kinds).toEqual(['comment']);
    expect(observe(['data: {"choices": [\n\n', 'data: {"choices": [\r\n\r\n']).kinds).toEqual(['malformed', 'malformed']);
    expect(observe(['data: [1,2]\n\n', 'data: 42\n\n']).kinds).toEqual(['malformed', 'malformed']);
    const { observer, kinds } = observe(['data: {"error": {"message": "boom", "type": "InternalServerError", "code": 500}}\n\n']);
    expect(kinds).toEqual(['error']);
    expect(observer.upstreamError).toEqual({ message: 'boom' });
  });

  it('does not take a data line that only starts like one, or an event with text after its data line, for the fast path', () => {
    expect(observe([`datum: ${contentChunk('x')}\n\n`]).kinds).toEqual(['comment']);
    const withTrailer = observe([`data: ${contentChunk('x')}\nid: 9\n\n`]);
    expect(withTrailer.kinds).toEqual(['data']);
    expect(withTrailer.observer.text).toBe('x');
  });
});
