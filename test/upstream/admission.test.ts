// Per-server concurrency limits (max_concurrency in a JSON UPSTREAMS_FILE) with a short bounded
// queue: when every replica of a model is full the gateway answers 503 with Retry-After at once or
// after UPSTREAM_QUEUE_TIMEOUT_MS, never queueing without end; a slot that frees goes to the queue.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectErrorReply, metricSum, metricsText } from '../helpers/relay-fixtures.js';
import {
  MODEL_A,
  MODEL_B,
  adminUpstreams,
  holdStream,
  rowOf,
  seenBy,
  sendChat,
  servedBy,
  sleep,
  startCluster,
  waitUntil,
  type Cluster,
  type HeldStream,
  type Sent,
} from '../helpers/upstream-fixtures.js';

const QUEUE_TIMEOUT_MS = 400;

describe('admission: every replica at its limit', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({
      simulators: {
        a1: { interTokenMs: 2, models: [{ id: MODEL_A, maxModelLen: 8192 }] },
        a2: { interTokenMs: 2, models: [{ id: MODEL_A, maxModelLen: 8192 }] },
        b1: { interTokenMs: 2, models: [{ id: MODEL_B, maxModelLen: 8192 }] },
      },
      file: (urls) => ({
        upstreams: [
          { name: 'a1', url: urls.a1!, max_concurrency: 1 },
          { name: 'a2', url: urls.a2!, max_concurrency: 1 },
          { name: 'b1', url: urls.b1! },
        ],
      }),
      fileName: 'upstreams.json',
      environment: { UPSTREAM_QUEUE_SIZE: '1', UPSTREAM_QUEUE_TIMEOUT_MS: String(QUEUE_TIMEOUT_MS) },
    });
  });

  afterAll(async () => {
    await cluster?.close();
  });

  /** One slow stream on each A replica: both at max_concurrency 1. */
  async function fillBothReplicas(): Promise<HeldStream[]> {
    const held = [await holdStream(cluster), await holdStream(cluster)];
    expect(new Set(held.map((stream) => servedBy(cluster.sims, stream.requestId)))).toEqual(new Set(['a1', 'a2']));
    return held;
  }

  async function releaseAll(held: HeldStream[]): Promise<void> {
    await Promise.all(held.map((stream) => stream.release()));
  }

  async function timed(send: () => Promise<Sent>): Promise<Sent & { elapsedMs: number }> {
    const started = performance.now();
    const reply = await send();
    return { ...reply, elapsedMs: performance.now() - started };
  }

  it('answers 503 service_unavailable with Retry-After: at once when the queue is full, after the queue timeout otherwise', async () => {
    const held = await fillBothReplicas();
    try {
      const view = await adminUpstreams(cluster);
      expect(rowOf(view, 'a1')).toMatchObject({ in_flight: 1, max_concurrency: 1 });
      expect(rowOf(view, 'a2')).toMatchObject({ in_flight: 1, max_concurrency: 1 });
      const metrics = await metricsText(cluster.url);
      expect(metricSum(metrics, 'upstream_in_flight_requests', { upstream: 'a1' })).toBe(1);
      expect(metricSum(metrics, 'upstream_in_flight_requests', { upstream: 'a2' })).toBe(1);

      const queued = timed(() => sendChat(cluster));
      await sleep(50);
      const refused = await timed(() => sendChat(cluster, { stream: true }));
      expectErrorReply(refused, 503, 'service_unavailable');
      expect(refused.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
      expect(refused.elapsedMs).toBeLessThan(QUEUE_TIMEOUT_MS - 100);

      const timedOut = await queued;
      expectErrorReply(timedOut, 503, 'service_unavailable');
      expect(timedOut.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
      expect(timedOut.elapsedMs).toBeGreaterThanOrEqual(QUEUE_TIMEOUT_MS - 50);
      expect(timedOut.elapsedMs).toBeLessThan(QUEUE_TIMEOUT_MS + 1500);

      for (const reply of [refused, timedOut]) expect(seenBy(cluster.sims, reply.requestId)).toEqual([]);

      // Another model's server has room.
      const other = await sendChat(cluster, { model: MODEL_B });
      expect(other.status, other.text).toBe(200);
      expect(servedBy(cluster.sims, other.requestId)).toBe('b1');
    } finally {
      await releaseAll(held);
    }
  });

  it('gives a queued request the first slot that frees', async () => {
    const held = await fillBothReplicas();
    try {
      const queued = sendChat(cluster);
      await sleep(100);
      const freed = servedBy(cluster.sims, held[0]!.requestId);
      await held[0]!.release();
      const reply = await queued;
      expect(reply.status, reply.text).toBe(200);
      expect(servedBy(cluster.sims, reply.requestId)).toBe(freed);
    } finally {
      await releaseAll(held);
    }
  });

  it('keeps counting in-flight requests right across a reload (SIGHUP): released slots are free again', async () => {
    const held = await fillBothReplicas();
    try {
      expect(cluster.app.gateway.reloadUpstreams()).toBe(true);
    } finally {
      await releaseAll(held);
    }
    await Promise.all(['a1', 'a2'].map((name) => cluster.sims[name]!.waitForStats((stats) => stats.running === 0)));
    await waitUntil(() => adminUpstreams(cluster), (view) => view.data.every((row) => row.in_flight === 0), { what: 'no request in flight after the held streams ended' });
    const reply = await sendChat(cluster);
    expect(reply.status, reply.text).toBe(200);
  });
});
