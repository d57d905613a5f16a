// A stream's plain token events are read from their bytes once one has been parsed in full
// (token-chunk-template). Whatever vLLM sends, the observer must read exactly what a full parse of
// every event reads: these tests feed the same events to an observer that can use the template and
// to one that cannot (`data:` without its space takes the general path, which never learns one).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { StreamObserver } from '../../src/chat/stream-observer.js';

const head = { id: 'chatcmpl-7', object: 'chat.completion.chunk', created: 1760000000, model: 'sim-model' };
const event = (fields: Record<string, unknown>) => `data: ${JSON.stringify({ ...head, ...fields })}\n\n`;
const token = (content: string, index = 0) => event({ choices: [{ index, delta: { content }, logprobs: null, finish_reason: null, token_ids: null }] });
const roleChunk = event({ choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }], prompt_token_ids: null });
const finishChunk = (content: string) => event({ choices: [{ index: 0, delta: { content }, logprobs: null, finish_reason: 'stop', stop_reason: null, token_ids: null }] });
const usageChunk = event({ choices: [], usage: { prompt_tokens: 25, total_tokens: 33, completion_tokens: 8 } });

function stateOf(observer: StreamObserver) {
  const { usage, finishReason, model, upstreamError, outputEvents, text } = observer;
  return { usage, finishReason, model, upstreamError, outputEvents, text };
}

/** Feeds both observers event by event; after each one they must agree on its kind and on all they learned. */
function expectSameReading(events: Array<string | Buffer>): StreamObserver {
  const withTemplate = new StreamObserver({ collectText: true });
  const reference = new StreamObserver({ collectText: true });
  events.forEach((raw, position) => {
    const bytes = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw;
    const general = bytes.subarray(0, 6).toString('latin1') === 'data: ' ? Buffer.concat([Buffer.from('data:'), bytes.subarray(6)]) : bytes;
    const label = `event ${position}: ${JSON.stringify(bytes.toString('utf8'))}`;
    expect(withTemplate.inspect(bytes), label).toBe(reference.inspect(general));
    expect(stateOf(withTemplate), label).toEqual(stateOf(reference));
  });
  return withTemplate;
}

afterEach(() => vi.restoreAllMocks());

describe('reading plain token events from their bytes', () => {
  it('reads a vLLM chat stream as a full parse does, without parsing the token events', () => {
    const texts = ['Hello', ' "quoted"', ' back\\slash', ' line\nbreak', ' \u00e9t\u00e9 \u{1F600}', '', ' tab\there', ' \u2028'];
    const parse = vi.spyOn(JSON, 'parse');
    const observer = expectSameReading([roleChunk, ...texts.map((text) => token(text)), finishChunk('.'), usageChunk, 'data: [DONE]\n\n']);
    expect(observer.text).toBe(`${texts.join('')}.`);
    expect(observer.outputEvents).toBe(texts.filter((text) => text !== '').length + 1);
    expect(observer.usage).toEqual({ prompt_tokens: 25, completion_tokens: 8 });
    expect(observer.finishReason).toBe('stop');
    // Whole events parsed by the observer with the template: the role chunk, the first token (which
    // teaches it), the finish and the usage chunk; the reference parsed every one of them.
    const wholeEventParses = (calls: unknown[][]) => calls.filter(([text]) => typeof text === 'string' && text.startsWith('{')).length;
    expect(wholeEventParses(parse.mock.calls)).toBe(4 + (1 + texts.length + 2));
  });

  it('reads a completions stream (text, "usage": null on every chunk) and one with usage on every chunk', () => {
    const completion = (text: string, finishReason: string | null = null, usage: unknown = null) =>
      `data: ${JSON.stringify({ id: 'cmpl-1', object: 'text_completion', created: 1, model: 'm', choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason, stop_reason: null, prompt_logprobs: null }], usage })}\n\n`;
    const observer = expectSameReading([completion('a'), completion('b'), completion('"c"'), completion('', 'length'), 'data: [DONE]\n\n']);
    expect(observer.text).toBe('ab"c"');
    const continuous = (content: string, completionTokens: number) =>
      event({ choices: [{ index: 0, delta: { content }, finish_reason: null }], usage: { prompt_tokens: 3, completion_tokens: completionTokens, total_tokens: 3 + completionTokens } });
    const counted = expectSameReading([continuous('x', 1), continuous('y', 2), continuous('z', 3)]);
    expect(counted.usage).toEqual({ prompt_tokens: 3, completion_tokens: 3 });
  });

  it('tells apart what only looks like the template: other choices, finishes, errors, changed keys', () => {
    expectSameReading([
      token('a'),
      token('b', 1),
      token('c'),
      token('d', 1),
      event({ choices: [{ index: 0, delta: { content: 'e' }, logprobs: { content: [] }, finish_reason: null, token_ids: null }] }),
      event({ choices: [{ index: 0, delta: { content: 'f', reasoning: 'r' }, logprobs: null, finish_reason: null, token_ids: null }] }),
      event({ choices: [{ index: 0, delta: { content: 'g' }, logprobs: null, finish_reason: null, token_ids: null }], usage: { prompt_tokens: 1, completion_tokens: 1 } }),
      token('h'),
      'data: {"error": {"message": "boom", "type": "InternalServerError", "code": 500}}\n\n',
      finishChunk('i'),
    ]);
    // Events that must never become the template, followed by ones with the same bytes around the text.
    const finishing = (content: string, finishReason: string, extra: Record<string, unknown> = {}) =>
      event({ choices: [{ index: 0, delta: { content, ...extra }, logprobs: null, finish_reason: finishReason, token_ids: null }] });
    expect(expectSameReading([finishing('a', 'length'), finishing('b', 'stop', { reasoning: 'r' }), finishing('c', 'length')]).finishReason).toBe('length');
    const reasoning = (content: string) => event({ choices: [{ index: 0, delta: { content, reasoning: 'r' }, logprobs: null, finish_reason: null }] });
    expect(expectSameReading([reasoning('x'), reasoning('')]).outputEvents).toBe(2);
    // The text's place must be the one a parse reads: not a look-alike before it, not a key repeated.
    const decoy = (before: string, content: string) =>
      `data: {"choices":[{"index":0,"x":{"delta":{"content":"${before}"}},"delta":{"content":"${content}"},"finish_reason":null}]}\n\n`;
    expect(expectSameReading([decoy('a', 'a'), decoy('b', 'a')]).text).toBe('aa');
    const repeated = (first: string, last: string) =>
      `data: {"object":"text_completion","choices":[{"index":0,"text":"${first}","te\\u0078t":"${last}","finish_reason":null}],"usage":null}\n\n`;
    expect(expectSameReading([repeated('x', 'y'), repeated('z', 'y')]).text).toBe('yy');
  });

  it('finds every event that a byte changed in a template token malformed, or reads it as a full parse does', () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const alphabet = ['a', '"', '\\', 'u', '0', 'n', '}', ',', ':', '{', ']', '\n', '\u0001', '\u00e9', ' '];
    for (let round = 0; round < 400; round += 1) {
      const original = Buffer.from(token(`tok\\en ${round}`));
      const at = 6 + Math.floor(random() * (original.length - 8));
      const piece = Buffer.from(alphabet[Math.floor(random() * alphabet.length)] ?? 'a');
      const mode = Math.floor(random() * 3);
      const changed =
        mode === 0
          ? Buffer.concat([original.subarray(0, at), piece, original.subarray(at)])
          : mode === 1
            ? Buffer.concat([original.subarray(0, at), original.subarray(at + 1)])
            : Buffer.concat([original.subarray(0, at), piece, original.subarray(at + 1)]);
      expectSameReading([token('first'), changed, token('after')]);
    }
  });
});
