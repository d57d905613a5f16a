// The waiting queue (max running, FIFO, optional max queued) and aborts on client disconnect —
// streaming, non-streaming and queued — as seen through /metrics, the signals a gateway reads.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/sim/index.js';
import { CHAT_PATH, collectRawBody, firstBodyChunk, metricValue, metricsOf, openRawPost, postJson, userMessage, waitUntil } from './helpers.js';

describe('simulator scheduling and client disconnects', () => {
  let simulator: Simulator;
  let chatUrl: string;
  const model = { model_name: 'sim-llama-3-8b' };
  // About 5 s of tokens: long enough that only an abort can end these requests during a test.
  const slowBody = (stream: boolean) => ({ messages: userMessage('slow'), stream, max_tokens: 100 });

  beforeAll(async () => {
    simulator = await startSimulator({ interTokenMs: 50 });
    chatUrl = `${simulator.url}${CHAT_PATH}`;
  });

  afterAll(async () => {
    await simulator.close();
  });

  async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    return metricValue(await metricsOf(simulator.url), name, { ...model, ...labels });
  }

  async function waitForMetric(name: string, expected: number, labels: Record<string, string> = {}): Promise<void> {
    await waitUntil(async () => (await metric(name, labels)) === expected);
  }

  it('aborts a stream mid-way when the client goes: running back to 0, finished_reason="abort" + 1', async () => {
    const abortsBefore = await metric('vllm:request_success_total', { finished_reason: 'abort' });
    const tokensBefore = await metric('vllm:generation_tokens_total');
    const exchange = openRawPost({ url: chatUrl, body: slowBody(true) });
    const response = await exchange.response;
    expect(await firstBodyChunk(response)).toContain('"role":"assistant"');
    expect(await metric('vllm:num_requests_running')).toBe(1);
    exchange.destroy();
    await waitForMetric('vllm:num_requests_running', 0);
    expect(await metric('vllm:request_success_total', { finished_reason: 'abort' })).toBe(abortsBefore + 1);
    // Generation stopped at once: far fewer than the 100 planned tokens were produced.
    const generated = (await metric('vllm:generation_tokens_total')) - tokensBefore;
    expect(generated).toBeLessThan(10);
  });

  it('aborts a non-streaming request when the client goes before the answer', async () => {
    const abortsBefore = simulator.stats().finished.abort;
    const exchange = openRawPost({ url: chatUrl, body: slowBody(false) });
    exchange.response.catch(() => undefined);
    await simulator.waitForStats((stats) => stats.running === 1);
    exchange.destroy();
    const stats = await simulator.waitForStats((current) => current.running === 0);
    expect(stats.finished.abort).toBe(abortsBefore + 1);
    expect(await metric('vllm:num_requests_running')).toBe(0);
  });

  it('queues beyond maxRunning (num_requests_waiting 1), aborts a queued request, and serves FIFO', async () => {
    simulator.update({ maxRunning: 1 });
    try {
      const first = openRawPost({ url: chatUrl, body: slowBody(true) });
      await firstBodyChunk(await first.response);
      const queued = openRawPost({ url: chatUrl, body: slowBody(true) });
      queued.response.catch(() => undefined);
      await waitForMetric('vllm:num_requests_waiting', 1);
      expect(await metric('vllm:num_requests_running')).toBe(1);
      expect(simulator.stats()).toMatchObject({ running: 1, waiting: 1 });

      const abortsBefore = await metric('vllm:request_success_total', { finished_reason: 'abort' });
      queued.destroy();
      await waitForMetric('vllm:num_requests_waiting', 0);
      expect(await metric('vllm:request_success_total', { finished_reason: 'abort' })).toBe(abortsBefore + 1);
      expect(await metric('vllm:num_requests_running')).toBe(1);

      // A request queued behind the first starts as soon as the first goes away.
      const next = postJson({ url: chatUrl, body: { messages: userMessage('next'), max_tokens: 2 } });
      await waitForMetric('vllm:num_requests_waiting', 1);
      first.destroy();
      expect((await next).status).toBe(200);
      await waitForMetric('vllm:num_requests_running', 0);
    } finally {
      simulator.update({ maxRunning: 256 });
    }
  });

  it('answers 503 when maxQueued requests already wait', async () => {
    simulator.update({ maxRunning: 1, maxQueued: 0 });
    try {
      const first = openRawPost({ url: chatUrl, body: slowBody(true) });
      await firstBodyChunk(await first.response);
      const rejected = await postJson({ url: chatUrl, body: { messages: userMessage('no room'), stream: true } });
      expect(rejected.status).toBe(503);
      expect(rejected.json).toMatchObject({ error: { type: 'ServiceUnavailableError', code: 503 } });
      first.destroy();
      await simulator.waitForStats((stats) => stats.running === 0);
    } finally {
      simulator.update({ maxRunning: 256, maxQueued: null });
    }
  });

  it('exposes vLLM histograms with _bucket, _sum and _count, and counts tokens', async () => {
    const reply = await postJson({ url: chatUrl, body: { messages: userMessage('count me'), max_tokens: 3 } });
    expect(reply.status).toBe(200);
    const text = await metricsOf(simulator.url);
    for (const name of [
      'vllm:time_to_first_token_seconds',
      'vllm:inter_token_latency_seconds',
      'vllm:e2e_request_latency_seconds',
      'vllm:request_queue_time_seconds',
    ]) {
      expect(text).toContain(`# TYPE ${name} histogram`);
      expect(metricValue(text, `${name}_count`, model)).toBeGreaterThan(0);
      expect(metricValue(text, `${name}_bucket`, { ...model, le: '+Inf' })).toBe(metricValue(text, `${name}_count`, model));
      expect(metricValue(text, `${name}_sum`, model)).toBeGreaterThan(0);
    }
    expect(metricValue(text, 'vllm:request_success_total', { ...model, finished_reason: 'length' })).toBeGreaterThan(0);
    expect(metricValue(text, 'vllm:prompt_tokens_total', model)).toBeGreaterThan(0);
    expect(metricValue(text, 'vllm:kv_cache_usage_perc', model)).toBe(0);
  });

  it('stops every open stream when the simulator closes', async () => {
    const closing = await startSimulator({ interTokenMs: 50 });
    const exchange = openRawPost({ url: `${closing.url}${CHAT_PATH}`, body: slowBody(true) });
    const response = await exchange.response;
    const body = collectRawBody(response);
    await closing.close();
    expect((await body).complete).toBe(false);
    expect(closing.stats()).toMatchObject({ running: 0, finished: { abort: 1 } });
  });
});
