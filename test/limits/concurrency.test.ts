// The cap on simultaneous generations per user (MAX_CONCURRENT_STREAMS): one more is refused with
// 429 too_many_concurrent, and a slot comes back the moment a generation is over — completed,
// failed upstream, or left by its client — on every generation route, streaming or not.
import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { newRequestId, openRawPost, readUntil, upstreamRequestsFor } from '../helpers/relay-fixtures.js';
import {
  APP_CHAT_PATH,
  CHAT_PATH,
  chatBody,
  eventually,
  expectNotRelayed,
  expectOk,
  expectRefused,
  expectRequestLimitHeaders,
  generate,
  rejectionsByReason,
  rejectionsSince,
  newLimitsCaller,
  startLimitsGateway,
  type LimitsCaller,
  type LimitsGateway,
} from '../helpers/limits-fixtures.js';

const MAX_STREAMS = 2;
const INTER_TOKEN_MS = 20;

describe.each(backends)('concurrent generations per user (%s)', (backend) => {
  let gateway: LimitsGateway;

  beforeAll(async () => {
    gateway = await startLimitsGateway({
      backend,
      environment: { MAX_CONCURRENT_STREAMS: String(MAX_STREAMS) },
      simulatorOptions: { interTokenMs: INTER_TOKEN_MS },
    });
  });

  afterAll(async () => {
    await gateway.close();
  });

  interface OpenStream {
    requestId: string;
    response: IncomingMessage;
    destroy(): void;
    /** Reads the rest of the stream; resolves with everything read. */
    finish(): Promise<string>;
  }

  /** A stream admitted and under way: its 200 and first content are in; the rest is left unread. */
  async function openStream(caller: LimitsCaller, options: { path?: string; body?: Record<string, unknown> } = {}): Promise<OpenStream> {
    const requestId = newRequestId();
    const exchange = openRawPost({
      url: gateway.url,
      path: options.path ?? CHAT_PATH,
      body: options.body ?? chatBody({ stream: true, max_tokens: 250, ignore_eos: true }),
      credential: options.path === APP_CHAT_PATH ? caller.accessToken : caller.apiKey,
      requestId,
    });
    const response = await exchange.response;
    expect(response.statusCode).toBe(200);
    await readUntil(response, (text) => text.includes('data: {'), 3000);
    return {
      requestId,
      response,
      destroy: exchange.destroy,
      finish: () => {
        // readUntil paused the response when its condition held; reading on needs it flowing again.
        const rest = readUntil(response, () => false, 10_000);
        response.resume();
        return rest;
      },
    };
  }

  /** Ends a holder stream at the end of a test: its client leaves. */
  function release(...streams: OpenStream[]): void {
    for (const stream of streams) stream.destroy();
  }

  it('refuses one generation more than the cap with 429 too_many_concurrent, and only for that user', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const rejectionsBefore = await rejectionsByReason(gateway.app);
    const first = await openStream(caller);
    const second = await openStream(caller, { path: APP_CHAT_PATH, body: chatBody({ max_tokens: 250, ignore_eos: true }) });
    try {
      for (const path of [CHAT_PATH, APP_CHAT_PATH]) {
        const refused = await generate(gateway.app, { credential: caller.accessToken, path, body: chatBody({ stream: path === CHAT_PATH }) });
        expectRefused(refused, 'too_many_concurrent');
        expectNotRelayed(gateway.simulator, refused.requestId);
      }
      // Both refusals counted, under one reason.
      expect([...rejectionsSince(rejectionsBefore, await rejectionsByReason(gateway.app)).values()]).toEqual([2]);

      const other = await newLimitsCaller(gateway.app);
      expectOk(await generate(gateway.app, { credential: other.apiKey }));
    } finally {
      release(first, second);
    }
  });

  it('gives the slot back the moment a stream completes: back-to-back requests never trip the cap', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const holder = await openStream(caller);
    try {
      for (let index = 0; index < 4; index += 1) {
        const stream = await openStream(caller, { body: chatBody({ stream: true, max_tokens: 5, ignore_eos: true }) });
        const text = await stream.finish();
        expect(text).toContain('data: [DONE]');
      }
      // Straight after a JSON answer too.
      for (let index = 0; index < 3; index += 1) expectOk(await generate(gateway.app, { credential: caller.apiKey }));
    } finally {
      release(holder);
    }
  });

  it('gives the slot back when vLLM cuts the stream', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const holder = await openStream(caller);
    try {
      const cut = await openStream(caller, { body: chatBody({ stream: true, max_tokens: 50, ignore_eos: true, sim_fault: { cut_after_chunks: 2 } }) });
      const text = await cut.finish();
      expect(text).toContain('"error"');
      expectOk(await generate(gateway.app, { credential: caller.apiKey }));
    } finally {
      release(holder);
    }
  });

  it('tells a client refused for concurrency the truth about its request budget', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const first = await openStream(caller);
    const second = await openStream(caller);
    try {
      const refused = await generate(gateway.app, { credential: caller.apiKey });
      expectRefused(refused, 'too_many_concurrent');
      // Two requests of 100 000 made: the request budget is far from spent.
      expectRequestLimitHeaders(refused.headers, { limit: 100_000, remaining: 99_998 });
    } finally {
      release(first, second);
    }
  });

  it('gives the slot back when vLLM answers an error before any byte (502)', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const holder = await openStream(caller);
    try {
      const failed = await generate(gateway.app, { credential: caller.apiKey, body: chatBody({ stream: true, sim_fault: { status: 500 } }) });
      expect(failed.statusCode, failed.body).toBe(502);
      expectRequestLimitHeaders(failed.headers, { limit: 100_000, remaining: 99_998 });
      expectOk(await generate(gateway.app, { credential: caller.apiKey }));
    } finally {
      release(holder);
    }
  });

  it('gives the slot back as soon as the client leaves mid-stream', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const holder = await openStream(caller);
    try {
      const leaving = await openStream(caller);
      expectRefused(await generate(gateway.app, { credential: caller.apiKey }), 'too_many_concurrent');
      const abortsBefore = gateway.simulator.stats().finished.abort;
      leaving.destroy();
      // The gateway notices the closed socket within a few milliseconds; allow a little scheduling slack.
      await eventually(async () => expectOk(await generate(gateway.app, { credential: caller.apiKey })), 1000);
      await gateway.simulator.waitForStats((stats) => stats.finished.abort > abortsBefore, 2000);
    } finally {
      release(holder);
    }
  });

  it('gives the slot back as soon as the client of a JSON (non-streaming) generation leaves', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const holder = await openStream(caller);
    try {
      const requestId = newRequestId();
      const leaving = openRawPost({ url: gateway.url, path: CHAT_PATH, body: chatBody({ max_tokens: 250, ignore_eos: true }), credential: caller.apiKey, requestId });
      await eventually(() => Promise.resolve(expect(upstreamRequestsFor(gateway.simulator, requestId)).toHaveLength(1)), 2000);
      expectRefused(await generate(gateway.app, { credential: caller.apiKey }), 'too_many_concurrent');
      leaving.destroy();
      await eventually(async () => expectOk(await generate(gateway.app, { credential: caller.apiKey })), 1000);
    } finally {
      release(holder);
    }
  });

  it('holds a slot for a JSON (non-streaming) generation while it runs', async () => {
    const caller = await newLimitsCaller(gateway.app);
    const holder = await openStream(caller);
    try {
      const requestId = newRequestId();
      const slow = generate(gateway.app, { credential: caller.apiKey, body: chatBody({ max_tokens: 25, ignore_eos: true }), requestId });
      await eventually(() => Promise.resolve(expect(upstreamRequestsFor(gateway.simulator, requestId)).toHaveLength(1)), 2000);
      expectRefused(await generate(gateway.app, { credential: caller.apiKey }), 'too_many_concurrent');
      expectOk(await slow);
      expectOk(await generate(gateway.app, { credential: caller.apiKey }));
    } finally {
      release(holder);
    }
  });
});
