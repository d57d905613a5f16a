// The relay reads vLLM's body through upstreamChunks: every chunk in order, failures surfaced,
// backpressure kept while the relay waits, and the stream ended when the relay leaves early.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { upstreamChunks } from '../../src/chat/upstream-chunks.js';

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

/** A body with one chunk waiting, read by a loop that leaves after that chunk. */
async function leaveAfterFirstChunk(): Promise<PassThrough> {
  const source = new PassThrough();
  source.write('only');
  for await (const chunk of upstreamChunks(source)) {
    expect(chunk.toString()).toBe('only');
    break;
  }
  return source;
}

function textOf(result: IteratorResult<Buffer>): string {
  return result.done === true ? '' : result.value.toString();
}

async function collect(iterable: AsyncIterable<Buffer>): Promise<string[]> {
  const chunks: string[] = [];
  for await (const chunk of iterable) chunks.push(chunk.toString());
  return chunks;
}

describe('upstreamChunks', () => {
  it('yields every chunk in order, written before and while it is read, then ends', async () => {
    const source = new PassThrough();
    const chunks = upstreamChunks(source);
    source.write('a');
    source.write('b');
    const collected = collect(chunks);
    setImmediate(() => {
      source.write('c');
      source.end('d');
    });
    expect(await collected).toEqual(['a', 'b', 'c', 'd']);
  });

  it('rejects a waiting read with the stream’s error', async () => {
    const source = new PassThrough();
    const iterator = upstreamChunks(source)[Symbol.asyncIterator]();
    const pending = iterator.next();
    source.destroy(Object.assign(new Error('socket hang up'), { code: 'UND_ERR_SOCKET' }));
    await expect(pending).rejects.toMatchObject({ code: 'UND_ERR_SOCKET' });
  });

  it('puts a failure before what was held, as Node’s iterator does (a timed-out answer does not go on)', async () => {
    const source = new PassThrough();
    const iterator = upstreamChunks(source)[Symbol.asyncIterator]();
    source.write('first');
    source.write('held');
    await nextTurn();
    expect(textOf(await iterator.next())).toBe('first');
    source.destroy(new Error('cut'));
    await nextTurn();
    await expect(iterator.next()).rejects.toThrow('cut');
  });

  it('reads a body that was paused before reading began', async () => {
    const source = new PassThrough();
    source.pause();
    source.end('paused before');
    expect(await collect(upstreamChunks(source))).toEqual(['paused before']);
  });

  it('treats a stream destroyed without an error or an end as a premature close', async () => {
    const source = new PassThrough();
    const iterator = upstreamChunks(source)[Symbol.asyncIterator]();
    const pending = iterator.next();
    source.destroy();
    await expect(pending).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
  });

  it('pauses the source while chunks wait unread, and lets it flow again as they are read', async () => {
    const source = new PassThrough();
    const iterator = upstreamChunks(source)[Symbol.asyncIterator]();
    for (let index = 0; index < 20; index += 1) source.write(`chunk ${index}`);
    await nextTurn();
    expect(source.isPaused()).toBe(true);
    const read: string[] = [];
    for (let index = 0; index < 20; index += 1) {
      const next = await iterator.next();
      read.push(textOf(next));
      await nextTurn();
    }
    expect(read).toEqual(Array.from({ length: 20 }, (_, index) => `chunk ${index}`));
    expect(source.isPaused()).toBe(false);
  });

  it('ends the stream when the reader leaves early', async () => {
    const source = await leaveAfterFirstChunk();
    expect(source.destroyed).toBe(true);
  });
});

describe('upstreamChunks over a stream already over when reading starts', () => {
  it('rejects with the error of a stream that failed before it was read', async () => {
    const source = new PassThrough();
    source.on('error', () => undefined);
    source.destroy(Object.assign(new Error('aborted'), { code: 'UND_ERR_ABORTED' }));
    await nextTurn();
    await expect(upstreamChunks(source)[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: 'UND_ERR_ABORTED' });
  });

  it('rejects as a premature close for a stream destroyed without an error', async () => {
    const source = new PassThrough();
    source.destroy();
    await nextTurn();
    await expect(upstreamChunks(source)[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
  });

  it('is done at once for a stream that already ended', async () => {
    const source = new PassThrough();
    source.end();
    source.resume();
    await new Promise((resolve) => source.once('end', resolve));
    expect(await upstreamChunks(source)[Symbol.asyncIterator]().next()).toEqual({ value: undefined, done: true });
  });
});

describe('upstreamChunks after the reader left', () => {
  it('still listens for errors: the caller’s abort of a body it stopped reading does not end the process', async () => {
    const source = await leaveAfterFirstChunk();
    expect(source.listenerCount('error')).toBeGreaterThan(0);
    expect(() => source.emit('error', new Error('aborted after the reader left'))).not.toThrow();
  });
});
