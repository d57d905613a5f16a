// When one vLLM server fails: the breaker that ejects it and lets it back after a probe, the one
// retry on another replica (before the first byte only, never on 4xx), client errors that never
// count against a server, and a server killed while traffic flows.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectErrorReply, metricSum, metricsText, sseData, upstreamRequestsFor } from '../helpers/relay-fixtures.js';
import {
  MODEL_A,
  MODEL_B,
  adminUpstreams,
  healthUpstreams,
  rowOf,
  seenBy,
  sendChat,
  servedBy,
  sleep,
  startCluster,
  waitUntil,
  type Cluster,
  type Sent,
} from '../helpers/upstream-fixtures.js';

const threeServers = {
  simulators: {
    a1: { interTokenMs: 2, models: [{ id: MODEL_A, maxModelLen: 1024 }] },
    a2: { interTokenMs: 2, models: [{ id: MODEL_A, maxModelLen: 1024 }] },
    b1: { interTokenMs: 2, models: [{ id: MODEL_B, maxModelLen: 1024 }] },
  },
  file: (urls: Record<string, string>) => ({
    upstreams: [
      { name: 'a1', url: urls.a1! },
      { name: 'a2', url: urls.a2! },
      { name: 'b1', url: urls.b1! },
    ],
  }),
};

/** Whether a /v1 answer is a complete success: a JSON completion, or a stream with no error event that ends in [DONE]. */
function completeAnswer(reply: Sent, stream: boolean): boolean {
  if (reply.status !== 200) return false;
  if (!stream) return Array.isArray((JSON.parse(reply.text) as { choices?: unknown }).choices);
  const events = sseData(reply.text);
  return events.at(-1) === '[DONE]' && events.every((event) => !event.startsWith('{"error"'));
}

describe('circuit breaker', () => {
  const cooldownMs = 1000;
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({ ...threeServers, environment: { UPSTREAM_FAILURE_THRESHOLD: '2', UPSTREAM_COOLDOWN_MS: String(cooldownMs) } });
  });

  afterAll(async () => {
    await cluster?.close();
  });

  it('opens after UPSTREAM_FAILURE_THRESHOLD failures (no traffic during the cool-down), and closes once a probe succeeds', async () => {
    const a1 = cluster.sims.a1!;
    a1.setFault({ status: 500 });
    let failures = 0;
    let lastFailureAt = 0;
    try {
      for (let index = 0; index < 40 && failures < 2; index += 1) {
        const reply = await sendChat(cluster);
        if (servedBy(cluster.sims, reply.requestId) === 'a1') {
          // vLLM's 500 is not one of the statuses worth a retry: the client gets 502.
          expectErrorReply(reply, 502, 'upstream_error');
          failures += 1;
          lastFailureAt = Date.now();
        } else {
          expect(reply.status, reply.text).toBe(200);
        }
      }
      expect(failures).toBe(2);

      // Open: during the cool-down every request goes to a2.
      let duringCooldown = 0;
      while (Date.now() - lastFailureAt < cooldownMs - 300) {
        const reply = await sendChat(cluster, { stream: duringCooldown % 2 === 1 });
        expect(reply.status, reply.text).toBe(200);
        expect(servedBy(cluster.sims, reply.requestId)).toBe('a2');
        duringCooldown += 1;
      }
      expect(duringCooldown).toBeGreaterThanOrEqual(3);

      const view = await adminUpstreams(cluster);
      expect(rowOf(view, 'a1').breaker).toBe('open');
      expect(rowOf(view, 'a1').error_rate).toBeGreaterThan(0);
      expect(rowOf(view, 'a2')).toMatchObject({ breaker: 'closed', error_rate: 0 });
      const health = await healthUpstreams(cluster.app);
      expect(health.find((entry) => entry.name === 'a1')?.breaker).toBe('open');
      const metrics = await metricsText(cluster.url);
      expect(metricSum(metrics, 'upstream_breaker_state', { upstream: 'a1' })).toBe(2);
      expect(metricSum(metrics, 'upstream_healthy', { upstream: 'a1' })).toBe(0);
      expect(metricSum(metrics, 'upstream_breaker_state', { upstream: 'a2' })).toBe(0);

      // After the cool-down, one probe goes to a1; it fails, so the breaker opens again.
      await sleep(cooldownMs - (Date.now() - lastFailureAt) + 50);
      let probe: Sent | null = null;
      for (let index = 0; index < 30 && probe === null; index += 1) {
        const reply = await sendChat(cluster);
        if (seenBy(cluster.sims, reply.requestId).includes('a1')) probe = reply;
        else expect(reply.status, reply.text).toBe(200);
      }
      expect(probe, 'a half-open probe reached a1').not.toBeNull();
      expectErrorReply(probe!, 502, 'upstream_error');
      expect(rowOf(await adminUpstreams(cluster), 'a1').breaker).toBe('open');
    } finally {
      a1.setFault(null);
    }

    // Fault gone: after the cool-down a probe succeeds, the breaker closes, and a1 takes traffic again.
    const deadline = Date.now() + cooldownMs + 3000;
    let probed = false;
    while (!probed && Date.now() < deadline) {
      const reply = await sendChat(cluster);
      expect(reply.status, reply.text).toBe(200);
      probed = servedBy(cluster.sims, reply.requestId) === 'a1';
      if (!probed) await sleep(25);
    }
    expect(probed, 'a1 took a request again').toBe(true);
    expect(rowOf(await adminUpstreams(cluster), 'a1').breaker).toBe('closed');
    expect(metricSum(await metricsText(cluster.url), 'upstream_breaker_state', { upstream: 'a1' })).toBe(0);
    const served = new Set<string>();
    for (let index = 0; index < 20 && served.size < 2; index += 1) {
      const reply = await sendChat(cluster);
      expect(reply.status, reply.text).toBe(200);
      served.add(servedBy(cluster.sims, reply.requestId));
    }
    expect(served).toEqual(new Set(['a1', 'a2']));
  });
});

describe('one retry, before the first byte', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    // A high threshold: these tests make a1 fail on purpose and must not open its breaker.
    cluster = await startCluster({ ...threeServers, environment: { UPSTREAM_FAILURE_THRESHOLD: '1000' } });
  });

  afterAll(async () => {
    await cluster?.close();
  });

  /** With a1 failing, sends requests until one went to a1 first; every one must succeed. */
  async function retriedFromA1(stream: boolean): Promise<Sent> {
    for (let index = 0; index < 30; index += 1) {
      const reply = await sendChat(cluster, { stream });
      expect(reply.status, reply.text).toBe(200);
      expect(completeAnswer(reply, stream), reply.text).toBe(true);
      const seen = seenBy(cluster.sims, reply.requestId);
      if (seen.includes('a1')) return reply;
      expect(seen).toEqual(['a2']);
    }
    throw new Error('no request went to a1 first in 30 tries');
  }

  for (const status of [503, 502, 504]) {
    for (const stream of [false, true]) {
      it(`retries a ${status} from one replica on the other (stream: ${stream}): the client gets the answer and both saw the request`, async () => {
        const { a1, a2 } = cluster.sims;
        a1!.setFault({ status });
        try {
          const reply = await retriedFromA1(stream);
          const first = upstreamRequestsFor(a1!, reply.requestId);
          const second = upstreamRequestsFor(a2!, reply.requestId);
          expect(first).toHaveLength(1);
          expect(second).toHaveLength(1);
          expect(second[0]!.receivedAt).toBeGreaterThanOrEqual(first[0]!.receivedAt);
          expect(seenBy(cluster.sims, reply.requestId)).not.toContain('b1');
        } finally {
          a1!.setFault(null);
        }
      });
    }
  }

  it('retries a connection vLLM drops without answering on the other replica', async () => {
    const { a1 } = cluster.sims;
    a1!.setFault({ refuse: true });
    try {
      const reply = await retriedFromA1(false);
      expect(seenBy(cluster.sims, reply.requestId)).toEqual(['a1', 'a2']);
    } finally {
      a1!.setFault(null);
    }
  });

  it('retries a non-streaming request whose connection is reset before the answer, once: two replicas saw it, then 502', async () => {
    const reply = await sendChat(cluster, { max_tokens: 20, ignore_eos: true, sim_fault: { cut_after_chunks: 3 } });
    expectErrorReply(reply, 502, ['upstream_unavailable', 'upstream_error']);
    expect(seenBy(cluster.sims, reply.requestId)).toEqual(['a1', 'a2']);
    for (const name of ['a1', 'a2']) expect(upstreamRequestsFor(cluster.sims[name]!, reply.requestId)).toHaveLength(1);
  });

  it('does not retry a stream cut after its first chunks: the client gets them, an error event and [DONE]; one replica saw it', async () => {
    for (let index = 0; index < 4; index += 1) {
      const reply = await sendChat(cluster, { stream: true, max_tokens: 40, ignore_eos: true, sim_fault: { cut_after_chunks: 3 } });
      expect(reply.status, reply.text).toBe(200);
      const events = sseData(reply.text);
      expect(events).toHaveLength(5);
      for (const chunk of events.slice(0, 3)) expect(JSON.parse(chunk)).toMatchObject({ object: 'chat.completion.chunk' });
      expect(JSON.parse(events[3]!)).toMatchObject({ error: { message: expect.any(String) } });
      expect(events[4]).toBe('[DONE]');
      expect(seenBy(cluster.sims, reply.requestId)).toHaveLength(1);
    }
  });

  it('does not retry vLLM’s 4xx answers: one replica saw each', async () => {
    const cases: Array<{ fields: Record<string, unknown>; status: number }> = [
      { fields: { model: 'no-such-model' }, status: 404 },
      { fields: { max_tokens: 2000 }, status: 400 },
      { fields: { sim_fault: { status: 400 } }, status: 400 },
      { fields: { sim_fault: { status: 404 } }, status: 404 },
    ];
    for (const { fields, status } of cases) {
      for (const stream of [false, true]) {
        const reply = await sendChat(cluster, { ...fields, stream });
        expect(reply.status, reply.text).toBe(status);
        expect(seenBy(cluster.sims, reply.requestId)).toHaveLength(1);
      }
    }
  });

  it('retries once at most: when both replicas fail, the client gets the second failure', async () => {
    for (const stream of [false, true]) {
      const reply = await sendChat(cluster, { stream, sim_fault: { status: 503 } });
      expectErrorReply(reply, 503, 'service_unavailable');
      expect(reply.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(seenBy(cluster.sims, reply.requestId)).toEqual(['a1', 'a2']);
      for (const name of ['a1', 'a2']) expect(upstreamRequestsFor(cluster.sims[name]!, reply.requestId)).toHaveLength(1);
    }
  });

  it('retries only on another server of the same model: a failing B server’s request never reaches A’s servers', async () => {
    const { b1 } = cluster.sims;
    b1!.setFault({ status: 503 });
    try {
      for (const stream of [false, true]) {
        const reply = await sendChat(cluster, { model: MODEL_B, stream });
        expect(seenBy(cluster.sims, reply.requestId), `servers that saw it; the client got ${reply.status} ${reply.text}`).toEqual(['b1']);
        expectErrorReply(reply, 503, 'service_unavailable');
        expect(reply.headers.get('retry-after')).toMatch(/^\d+$/);
      }
    } finally {
      b1!.setFault(null);
    }
  });
});

describe('a server that refuses connections', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    // No health checks after the first and a breaker that never opens: every request that picks
    // the dead server first has to be saved by the retry.
    cluster = await startCluster({ ...threeServers, environment: { UPSTREAM_FAILURE_THRESHOLD: '1000', UPSTREAM_POLL_INTERVAL_MS: '600000' } });
    await cluster.sims.a1!.close();
  });

  afterAll(async () => {
    await cluster?.close();
  });

  it('is retried on the other replica: every request succeeds', async () => {
    for (let index = 0; index < 16; index += 1) {
      const stream = index % 2 === 1;
      const reply = await sendChat(cluster, { stream });
      expect(completeAnswer(reply, stream), reply.text).toBe(true);
      expect(servedBy(cluster.sims, reply.requestId)).toBe('a2');
    }
    const a1 = rowOf(await adminUpstreams(cluster), 'a1');
    expect(a1.error_rate, 'some requests picked a1 first').toBeGreaterThan(0);
    expect(metricSum(await metricsText(cluster.url), 'upstream_errors_total', { kind: 'connect' })).toBeGreaterThan(0);
  });
});

describe('client errors never count against a server', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({ ...threeServers, environment: { UPSTREAM_FAILURE_THRESHOLD: '2' } });
  });

  afterAll(async () => {
    await cluster?.close();
  });

  it('leaves every breaker closed and the error rate at 0 after many 404 (unknown model) and 400 (context length) answers', async () => {
    const clientErrors = new Map<string, number>([
      ['a1', 0],
      ['a2', 0],
    ]);
    for (let index = 0; index < 40 && [...clientErrors.values()].some((count) => count < 4); index += 1) {
      const unknownModel = index % 2 === 0;
      const reply = await sendChat(cluster, unknownModel ? { model: `no-such-model-${index}` } : { max_tokens: 2000, stream: index % 4 === 1 });
      if (unknownModel) expectErrorReply(reply, 404, 'model_not_found');
      else expectErrorReply(reply, 400, 'context_length_exceeded');
      const server = servedBy(cluster.sims, reply.requestId);
      clientErrors.set(server, (clientErrors.get(server) ?? 0) + 1);
    }
    expect(clientErrors.get('a1')).toBeGreaterThanOrEqual(4);
    expect(clientErrors.get('a2')).toBeGreaterThanOrEqual(4);

    const view = await adminUpstreams(cluster);
    for (const row of view.data) expect(row, row.name).toMatchObject({ breaker: 'closed', healthy: true, error_rate: 0 });
    const metrics = await metricsText(cluster.url);
    for (const name of ['a1', 'a2', 'b1']) expect(metricSum(metrics, 'upstream_breaker_state', { upstream: name })).toBe(0);
    for (const entry of await healthUpstreams(cluster.app)) expect(entry.breaker).toBe('closed');

    const served = new Set<string>();
    for (let index = 0; index < 20 && served.size < 2; index += 1) {
      const reply = await sendChat(cluster);
      expect(reply.status, reply.text).toBe(200);
      served.add(servedBy(cluster.sims, reply.requestId));
    }
    expect(served).toEqual(new Set(['a1', 'a2']));
  });
});

describe('a replica killed while traffic flows', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({
      simulators: {
        k1: { interTokenMs: 3, models: [{ id: MODEL_A, maxModelLen: 8192 }] },
        k2: { interTokenMs: 3, models: [{ id: MODEL_A, maxModelLen: 8192 }] },
      },
      file: (urls) => ({ upstreams: [{ name: 'k1', url: urls.k1! }, { name: 'k2', url: urls.k2! }] }),
      fileName: 'upstreams.json',
    });
  });

  afterAll(async () => {
    await cluster?.close();
  });

  it('moves its traffic to the other replica: no request fails that had not started streaming', async () => {
    const { k1, k2 } = cluster.sims;
    const results: Array<{ reply: Sent; stream: boolean; startedAt: number }> = [];
    let running = true;
    const worker = async (offset: number): Promise<void> => {
      for (let index = offset; running; index += 1) {
        const stream = index % 2 === 0;
        const startedAt = Date.now();
        const reply = await sendChat(cluster, { stream, max_tokens: 12, ignore_eos: true });
        results.push({ reply, stream, startedAt });
      }
    };
    const workers = [0, 1, 2, 3].map((offset) => worker(offset));
    let killedAt = Number.POSITIVE_INFINITY;
    try {
      await waitUntil(() => Promise.resolve([k1!.stats().received, k2!.stats().received]), ([first, second]) => first! >= 6 && second! >= 6, {
        what: 'traffic on both replicas',
        timeoutMs: 5000,
      });
      await k1!.close();
      killedAt = Date.now();
      await sleep(800);
    } finally {
      running = false;
      await Promise.all(workers);
    }

    const after = results.filter((result) => result.startedAt > killedAt);
    expect(after.length).toBeGreaterThanOrEqual(8);
    for (const { reply, stream } of after) {
      expect(completeAnswer(reply, stream), reply.text).toBe(true);
      expect(seenBy({ k2: k2! }, reply.requestId)).toEqual(['k2']);
    }
    for (const { reply, stream } of results) {
      // Only a stream that had started on k1 may end with an error event (after HTTP 200).
      expect(reply.status, reply.text).toBe(200);
      if (!completeAnswer(reply, stream)) {
        expect(stream, reply.text).toBe(true);
        expect(seenBy(cluster.sims, reply.requestId)).toEqual(['k1']);
        expect(sseData(reply.text).at(-1)).toBe('[DONE]');
      }
    }

    await waitUntil(() => adminUpstreams(cluster), (view) => !rowOf(view, 'k1').healthy, { what: 'k1 seen unhealthy' });
    const health = await healthUpstreams(cluster.app);
    expect(health.map((entry) => [entry.name, entry.status])).toEqual([
      ['k1', 'down'],
      ['k2', 'up'],
    ]);
    const metrics = await metricsText(cluster.url);
    expect(metricSum(metrics, 'upstream_healthy', { upstream: 'k1' })).toBe(0);
    expect(metricSum(metrics, 'upstream_healthy', { upstream: 'k2' })).toBe(1);
  });
});
