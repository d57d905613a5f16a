// Fault switches: each kind, set by header, by body field and server-wide, on streams and on
// non-streaming answers.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FAULT_HEADER, MALFORMED_BODY, MALFORMED_EVENT, startSimulator, type Simulator } from '../../src/sim/index.js';
import { CHAT_PATH, collectRawBody, openRawPost, postJson, sseData, userMessage } from './helpers.js';

describe('simulator faults', () => {
  let simulator: Simulator;
  let chatUrl: string;
  const streamBody = { messages: userMessage('fault me'), stream: true, max_tokens: 5 };

  beforeAll(async () => {
    simulator = await startSimulator();
    chatUrl = `${simulator.url}${CHAT_PATH}`;
  });

  afterEach(() => {
    simulator.setFault(null);
  });

  afterAll(async () => {
    await simulator.close();
  });

  async function rawStream(body: unknown): Promise<{ status: number; text: string; complete: boolean }> {
    const exchange = openRawPost({ url: chatUrl, body });
    const response = await exchange.response;
    return { status: response.statusCode ?? 0, ...(await collectRawBody(response)) };
  }

  it('refuse: destroys the socket without any response', async () => {
    await expect(
      fetch(chatUrl, { method: 'POST', headers: { 'content-type': 'application/json', [FAULT_HEADER]: '{"refuse":true}' }, body: JSON.stringify(streamBody) }),
    ).rejects.toThrow();
    expect(simulator.received.at(-1)!.headers[FAULT_HEADER]).toBe('{"refuse":true}');
  });

  it('delay_ms: holds the response headers back', async () => {
    const started = performance.now();
    const reply = await postJson({ url: chatUrl, body: { ...streamBody, stream: false, sim_fault: { delay_ms: 200 } } });
    expect(reply.status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
  });

  it('status: answers that status with the error envelope (header, body and server-wide)', async () => {
    const byHeader = await postJson({ url: chatUrl, body: streamBody, headers: { [FAULT_HEADER]: '{"status":500}' } });
    expect(byHeader.status).toBe(500);
    expect(byHeader.json).toMatchObject({ error: { type: 'InternalServerError', code: 500 } });
    const byBody = await postJson({ url: chatUrl, body: { ...streamBody, sim_fault: { status: 429 } } });
    expect(byBody.status).toBe(429);
    simulator.setFault({ status: 503 });
    const serverWide = await postJson({ url: chatUrl, body: streamBody });
    expect(serverWide.status).toBe(503);
    expect(serverWide.json).toMatchObject({ error: { type: 'ServiceUnavailableError', code: 503 } });
    // The body overrides the server-wide switch key by key.
    const overridden = await postJson({ url: chatUrl, body: { ...streamBody, sim_fault: { status: 502 } } });
    expect(overridden.status).toBe(502);
  });

  it('cut_after_chunks: sends N chunks, then the socket dies without [DONE]', async () => {
    const errorsBefore = simulator.stats().finished.error;
    const result = await rawStream({ ...streamBody, sim_fault: { cut_after_chunks: 2 } });
    expect(result.status).toBe(200);
    expect(result.complete).toBe(false);
    const frames = result.text.split('\n\n').filter((frame) => frame !== '');
    expect(frames).toHaveLength(2);
    expect(result.text).not.toContain('[DONE]');
    await simulator.waitForStats((stats) => stats.finished.error === errorsBefore + 1);
  });

  it('cut_after_chunks beyond the stream length still cuts before [DONE]', async () => {
    const result = await rawStream({ ...streamBody, sim_fault: { cut_after_chunks: 1000 } });
    expect(result.complete).toBe(false);
    expect(result.text.split('\n\n').filter((frame) => frame !== '')).toHaveLength(6);
    expect(result.text).not.toContain('[DONE]');
  });

  it('error_after_chunks: sends N chunks, vLLM\'s mid-stream error event and [DONE], status 200', async () => {
    const reply = await postJson({ url: chatUrl, body: { ...streamBody, sim_fault: { error_after_chunks: 3 } } });
    expect(reply.status).toBe(200);
    const data = sseData(reply.text);
    expect(data).toHaveLength(5);
    expect(data[3]).toBe('{"error": {"message": "Simulated generation failure after 3 chunks.", "type": "InternalServerError", "param": null, "code": 500}}');
    expect(data[4]).toBe('[DONE]');
  });

  it('malformed_after_chunks: sends one event of invalid JSON, then carries on to [DONE]', async () => {
    const reply = await postJson({ url: chatUrl, body: { ...streamBody, sim_fault: { malformed_after_chunks: 1 } } });
    expect(reply.status).toBe(200);
    expect(reply.text).toContain(MALFORMED_EVENT);
    const data = sseData(reply.text);
    expect(data[1]).toBe('{"id": oops');
    expect(() => JSON.parse(data[1]!) as unknown).toThrow();
    expect(data).toHaveLength(1 + 1 + 5 + 1);
    expect(data.at(-1)).toBe('[DONE]');
  });

  it('plays chunk faults on non-streaming answers too: cut, 500 and a truncated body', async () => {
    const body = { messages: userMessage('plain'), max_tokens: 5 };
    await expect(postJson({ url: chatUrl, body: { ...body, sim_fault: { cut_after_chunks: 2 } } })).rejects.toThrow();
    const failed = await postJson({ url: chatUrl, body: { ...body, sim_fault: { error_after_chunks: 2 } } });
    expect(failed.status).toBe(500);
    expect(failed.json).toMatchObject({ error: { type: 'InternalServerError', code: 500 } });
    const malformed = await postJson({ url: chatUrl, body: { ...body, sim_fault: { malformed_after_chunks: 2 } } });
    expect(malformed.status).toBe(200);
    expect(malformed.text).toBe(MALFORMED_BODY);
  });

  it('applies a server-wide fault to the next N requests only when given a count', async () => {
    const body = { messages: userMessage('counted'), max_tokens: 2 };
    simulator.setFault({ status: 503 }, { times: 2 });
    const statuses: number[] = [];
    for (let index = 0; index < 4; index += 1) statuses.push((await postJson({ url: chatUrl, body })).status);
    expect(statuses).toEqual([503, 503, 200, 200]);
  });

  it('rejects a fault it cannot read with 400', async () => {
    const badHeader = await postJson({ url: chatUrl, body: streamBody, headers: { [FAULT_HEADER]: 'not json' } });
    expect(badHeader.status).toBe(400);
    const badBody = await postJson({ url: chatUrl, body: { ...streamBody, sim_fault: { cut_after_chunks: -1 } } });
    expect(badBody.status).toBe(400);
  });
});
