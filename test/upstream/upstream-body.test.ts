// A call to vLLM goes through undici's dispatcher with the gateway's own handler, its body read
// through UpstreamBody. Against a real HTTP server and a real undici Agent: every chunk in order,
// backpressure on the connection while chunks wait unread, failures before what was held, and the
// request aborted when its reader leaves or its signal fires.
import { getEventListeners, once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, buildConnector, type Dispatcher } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dispatchPost } from '../../src/upstream/upstream-dispatch.js';

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

let server: Server;
let baseUrl: string;
let handler: Handler = (_request, response) => response.end();
const agent = new Agent({ keepAliveTimeout: 4000 });

beforeAll(async () => {
  server = createServer((request, response) => handler(request, response));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await agent.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});
afterEach(() => {
  handler = (_request, response) => response.end();
});

const post = (signal = new AbortController().signal, path = '/v1/chat/completions', base = baseUrl, dispatcher: Dispatcher = agent) =>
  dispatchPost(dispatcher, base, path, { body: '{}', headers: { 'content-type': 'application/json' }, headersTimeout: 5000, bodyTimeout: 5000 }, signal);
const nextTurn = () => new Promise((resolve) => setTimeout(resolve, 20));

async function collect(body: AsyncIterable<Buffer>): Promise<string> {
  let text = '';
  for await (const chunk of body) text += chunk.toString();
  return text;
}

describe('a dispatched call to vLLM', () => {
  it('gives the status and headers, then every chunk in order, written before and while it is read', async () => {
    handler = (request, response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream', 'x-path': request.url ?? '' });
      response.write('a');
      setTimeout(() => response.write('b'), 20);
      setTimeout(() => response.end('c'), 40);
    };
    const answer = await post(undefined, '/v1/chat/completions', `${baseUrl}/prefix/`);
    expect(answer.statusCode).toBe(200);
    expect(answer.headers['content-type']).toBe('text/event-stream');
    expect(answer.headers['x-path']).toBe('/prefix/v1/chat/completions');
    expect(await collect(answer.body)).toBe('abc');
  });

  it('stops reading the connection while chunks wait unread, and reads on to the end', async () => {
    const chunk = Buffer.alloc(16 * 1024, 'x');
    const total = 4000;
    let written = 0;
    handler = (_request, response) => {
      response.writeHead(200);
      const writeMore = () => {
        while (written < total) {
          written += 1;
          if (!response.write(chunk)) return void response.once('drain', writeMore);
        }
        response.end();
      };
      writeMore();
    };
    const answer = await post();
    await new Promise((resolve) => setTimeout(resolve, 300));
    // 64 MB were on offer; while nothing was read, only what the sockets' buffers hold left the server.
    expect(written).toBeLessThan(total / 2);
    let bytes = 0;
    for await (const piece of answer.body) bytes += piece.length;
    expect(bytes).toBe(total * chunk.length);
  });

  it('puts a cut in the middle of the body before the chunks it still holds', async () => {
    handler = (_request, response) => {
      response.writeHead(200);
      response.write('first');
      setTimeout(() => response.socket?.destroy(), 30);
    };
    const answer = await post();
    await new Promise((resolve) => setTimeout(resolve, 100));
    await expect(answer.body[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: 'UND_ERR_SOCKET' });
  });

  it('aborts the request when its reader leaves early: the server sees the connection close', async () => {
    let closed: Promise<unknown> = Promise.resolve();
    handler = (_request, response) => {
      closed = once(response, 'close');
      response.writeHead(200);
      response.write('only');
    };
    const answer = await post();
    for await (const piece of answer.body) {
      expect(piece.toString()).toBe('only');
      break;
    }
    await closed;
  });

  it('aborts with the caller’s signal: before the answer, with its reason; in the middle of the body, for the reader', async () => {
    handler = (_request, response) => setTimeout(() => response.end('late'), 2000);
    const before = new AbortController();
    const pending = post(before.signal);
    await nextTurn();
    before.abort(new Error('the client left'));
    await expect(pending).rejects.toThrow('the client left');

    handler = (_request, response) => {
      response.writeHead(200);
      response.write('part');
    };
    const during = new AbortController();
    const answer = await post(during.signal);
    const iterator = answer.body[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.done === true ? null : first.value.toString()).toBe('part');
    const waiting = iterator.next();
    during.abort(new Error('stopped'));
    await expect(waiting).rejects.toThrow('stopped');
    await expect(post(during.signal)).rejects.toThrow('stopped');
  });

  it('after [DONE], reads the body’s end for a reader that leaves, keeping the connection; cuts it if the end does not come', async () => {
    const ports: number[] = [];
    let closed: Promise<unknown> = Promise.resolve();
    let endAfterMs: number | null = 30;
    handler = (request, response) => {
      ports.push(request.socket.remotePort ?? 0);
      closed = once(response, 'close');
      response.writeHead(200);
      response.write('data: [DONE]\n\n');
      if (endAfterMs !== null) setTimeout(() => response.end(), endAfterMs);
    };
    const leaveAtDone = async () => {
      const answer = await post();
      for await (const piece of answer.body) {
        expect(piece.toString()).toBe('data: [DONE]\n\n');
        answer.body.endExpected(200);
        break;
      }
    };
    await leaveAtDone();
    await closed;
    // The end reaches the client just after the server wrote it: the connection is free again then.
    await nextTurn();
    await leaveAtDone();
    expect(ports).toHaveLength(2);
    expect(ports[1]).toBe(ports[0]);
    await closed;
    endAfterMs = null;
    const startedAt = performance.now();
    await leaveAtDone();
    await closed;
    const waitedMs = performance.now() - startedAt;
    expect(waitedMs).toBeGreaterThanOrEqual(150);
    expect(waitedMs).toBeLessThan(2000);
  });

  it('answers an abort at once while the connection is still being made', async () => {
    handler = (_request, response) => response.end('too late');
    const connect = buildConnector({});
    const slowToConnect = new Agent({ connect: (options, callback) => void setTimeout(() => connect(options, callback), 800) });
    const controller = new AbortController();
    const startedAt = performance.now();
    const pending = post(controller.signal, '/v1/chat/completions', baseUrl, slowToConnect);
    setTimeout(() => controller.abort(new Error('the client left')), 50);
    await expect(pending).rejects.toThrow('the client left');
    expect(performance.now() - startedAt).toBeLessThan(600);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    await slowToConnect.destroy();
  });

  it('leaves no listener on the caller’s signal once the call is over, however it ended', async () => {
    handler = (_request, response) => {
      response.writeHead(200);
      response.write('part');
      setTimeout(() => response.end('end'), 20);
    };
    const ended = new AbortController();
    await collect((await post(ended.signal)).body);
    const left = new AbortController();
    for await (const piece of (await post(left.signal)).body) if (piece.length > 0) break;
    expect(getEventListeners(ended.signal, 'abort')).toHaveLength(0);
    expect(getEventListeners(left.signal, 'abort')).toHaveLength(0);
  });

  it('cuts a dropped body longer than 128 KiB instead of reading it all', async () => {
    let closed: Promise<unknown> = Promise.resolve();
    handler = (_request, response) => {
      closed = once(response, 'close');
      response.writeHead(200);
      response.write(Buffer.alloc(200 * 1024, 'x'));
    };
    await expect((await post()).body.dump()).rejects.toThrow('longer than it is read for');
    await closed;
  });

  it('reads a whole body of many chunks, and drops a short one while keeping the connection for the next call', async () => {
    const ports: number[] = [];
    handler = (request, response) => {
      ports.push(request.socket.remotePort ?? 0);
      response.writeHead(200);
      for (let index = 0; index < 50; index += 1) response.write(`${index},`);
      response.end();
    };
    const whole = await post();
    const expected = Array.from({ length: 50 }, (_, index) => `${index},`).join('');
    expect(await whole.body.text()).toBe(expected);
    expect((await (await post()).body.bytes()).toString()).toBe(expected);
    // Dropped bodies are read to their end: the connections stay open and are taken again (a
    // connection is free again only just after its answer ends, so the pool may use two).
    ports.length = 0;
    for (let call = 0; call < 10; call += 1) await (await post()).body.dump();
    expect(ports).toHaveLength(10);
    expect(new Set(ports).size).toBeLessThanOrEqual(2);
  });
});
