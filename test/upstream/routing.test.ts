// Routing across several vLLM servers: by model (aliases and LoRA adapters included), the union of
// their models, least-loaded choice (the gateway's own in-flight count, then vLLM's waiting queue),
// conversation affinity, and how each server's state shows in /health, /metrics and the admin view.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer } from '../helpers/auth-client.js';
import { metricSum, metricsText, newCaller, upstreamRequestFor } from '../helpers/relay-fixtures.js';
import { newUser, streamTurn } from '../helpers/chat-fixtures.js';
import {
  LORA_A,
  MODEL_A,
  MODEL_B,
  adminUpstreams,
  healthUpstreams,
  holdStream,
  rowOf,
  sendChat,
  servedBy,
  startCluster,
  waitUntil,
  type Cluster,
  type HeldStream,
} from '../helpers/upstream-fixtures.js';

describe('routing across three vLLM servers', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({
      simulators: {
        a1: { interTokenMs: 2, models: [{ id: MODEL_A, maxModelLen: 8192 }, { id: LORA_A, maxModelLen: null, parent: MODEL_A }] },
        a2: { interTokenMs: 2, models: [{ id: MODEL_A, maxModelLen: 8192 }] },
        b1: { interTokenMs: 2, apiKey: 'secret-of-b1', models: [{ id: MODEL_B, maxModelLen: 4096 }] },
      },
      file: (urls) => ({
        upstreams: [
          { name: 'a1', url: urls.a1! },
          { name: 'a2', url: `${urls.a2!}/v1` },
          { name: 'b1', url: urls.b1!, api_key: 'secret-of-b1' },
        ],
        aliases: { fast: MODEL_A, smart: MODEL_B },
      }),
    });
  });

  afterAll(async () => {
    await cluster?.close();
  });

  /** Marks a server unhealthy for the gateway (its /health answers 503) until `restore` runs. */
  async function ejectByHealth(name: string): Promise<{ restore: () => Promise<void> }> {
    cluster.sims[name]!.setHealthy(false);
    await waitUntil(() => adminUpstreams(cluster), (view) => !rowOf(view, name).healthy, { what: `${name} seen unhealthy` });
    return {
      restore: async () => {
        cluster.sims[name]!.setHealthy(true);
        await waitUntil(() => adminUpstreams(cluster), (view) => rowOf(view, name).healthy, { what: `${name} seen healthy again` });
      },
    };
  }

  /** Holds `count` slow streams, all on `name`, by ejecting the other A server while they start. */
  async function holdOn(name: 'a1' | 'a2', count: number): Promise<HeldStream[]> {
    const other = name === 'a1' ? 'a2' : 'a1';
    const ejected = await ejectByHealth(other);
    const held: HeldStream[] = [];
    try {
      for (let index = 0; index < count; index += 1) held.push(await holdStream(cluster));
    } finally {
      await ejected.restore();
    }
    for (const stream of held) expect(servedBy(cluster.sims, stream.requestId)).toBe(name);
    return held;
  }

  async function releaseAll(held: HeldStream[]): Promise<void> {
    await Promise.all(held.map((stream) => stream.release()));
    await waitUntil(() => adminUpstreams(cluster), (view) => view.data.every((row) => row.in_flight === 0), { what: 'nothing in flight' });
  }

  describe('by model', () => {
    it('sends model B only to the server that serves it, and model A only to the two that do, spread over both', async () => {
      const servedA: string[] = [];
      const servedB: string[] = [];
      for (let index = 0; index < 12; index += 1) {
        const stream = index % 2 === 1;
        const a = await sendChat(cluster, { model: MODEL_A, stream });
        expect(a.status, a.text).toBe(200);
        servedA.push(servedBy(cluster.sims, a.requestId));
        if (index % 2 === 0) {
          const b = await sendChat(cluster, { model: MODEL_B, stream });
          expect(b.status, b.text).toBe(200);
          servedB.push(servedBy(cluster.sims, b.requestId));
        }
      }
      expect(new Set(servedB)).toEqual(new Set(['b1']));
      // Each server gets its own key from the file.
      expect(cluster.sims.b1!.received.filter((entry) => entry.path === '/v1/chat/completions').every((entry) => entry.headers.authorization === 'Bearer secret-of-b1')).toBe(true);
      expect(new Set(servedA)).toEqual(new Set(['a1', 'a2']));
    });

    it('sends a LoRA adapter only to the server that lists it', async () => {
      for (let index = 0; index < 6; index += 1) {
        const reply = await sendChat(cluster, { model: LORA_A });
        expect(reply.status, reply.text).toBe(200);
        expect(servedBy(cluster.sims, reply.requestId)).toBe('a1');
        expect(upstreamRequestFor(cluster.sims.a1!, reply.requestId).body.model).toBe(LORA_A);
      }
    });

    it('resolves an alias from the file: the request reaches a server of the target model, with `model` rewritten', async () => {
      for (let index = 0; index < 6; index += 1) {
        const reply = await sendChat(cluster, { model: 'fast', stream: index % 2 === 0 });
        expect(reply.status, reply.text).toBe(200);
        const server = servedBy(cluster.sims, reply.requestId);
        expect(['a1', 'a2']).toContain(server);
        expect(upstreamRequestFor(cluster.sims[server]!, reply.requestId).body.model).toBe(MODEL_A);
      }
      const smart = await sendChat(cluster, { model: 'smart' });
      expect(smart.status, smart.text).toBe(200);
      expect(servedBy(cluster.sims, smart.requestId)).toBe('b1');
      expect(upstreamRequestFor(cluster.sims.b1!, smart.requestId).body.model).toBe(MODEL_B);
    });

    it('lists the union of the servers’ models in /v1/models and /api/models: A, B, the LoRA and the aliases, each once', async () => {
      const v1 = await cluster.app.inject({ method: 'GET', url: '/v1/models', headers: bearer(cluster.caller.apiKey) });
      expect(v1.statusCode, v1.body).toBe(200);
      const ids = v1.json<{ object: string; data: Array<{ id: string; parent?: string | null }> }>().data.map((card) => card.id);
      expect([...ids].sort()).toEqual([MODEL_A, MODEL_B, 'fast', LORA_A, 'smart'].sort());
      expect(new Set(ids).size).toBe(ids.length);

      const app = await cluster.app.inject({ method: 'GET', url: '/api/models', headers: bearer(cluster.caller.accessToken) });
      expect(app.statusCode, app.body).toBe(200);
      expect(app.json<{ data: Array<{ id: string }> }>().data.map((card) => card.id)).toEqual(ids);
    });
  });

  describe('least loaded', () => {
    it('sends new requests to the replica with fewer requests in flight from this gateway', async () => {
      const held = await holdOn('a1', 3);
      try {
        const view = await adminUpstreams(cluster);
        expect(rowOf(view, 'a1').in_flight).toBe(3);
        expect(rowOf(view, 'a2').in_flight).toBe(0);
        const metrics = await metricsText(cluster.url);
        expect(metricSum(metrics, 'upstream_in_flight_requests', { upstream: 'a1' })).toBe(3);
        expect(metricSum(metrics, 'upstream_in_flight_requests', { upstream: 'a2' })).toBe(0);

        // Three at once, twice: a2 goes from 0 to at most 2 in flight, still below a1's 3.
        for (let round = 0; round < 2; round += 1) {
          const replies = await Promise.all([0, 1, 2].map((index) => sendChat(cluster, { stream: index === round })));
          for (const reply of replies) {
            expect(reply.status, reply.text).toBe(200);
            expect(servedBy(cluster.sims, reply.requestId)).toBe('a2');
          }
        }
      } finally {
        await releaseAll(held);
      }
    });

    it('breaks a tie in in-flight requests with vLLM’s own waiting queue (vllm:num_requests_waiting)', async () => {
      const a2 = cluster.sims.a2!;
      a2.update({ maxRunning: 1 });
      // Load the gateway cannot see: requests sent to a2 directly, one running and two waiting.
      const direct = new AbortController();
      const directCalls = [0, 1, 2].map(() =>
        fetch(`${a2.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-relay-test-direct': '1' },
          body: JSON.stringify({ model: MODEL_A, messages: [{ role: 'user', content: 'queue here' }], max_tokens: 1500, ignore_eos: true }),
          signal: direct.signal,
        }).catch(() => undefined),
      );
      try {
        await a2.waitForStats((stats) => stats.running === 1 && stats.waiting === 2);
        await waitUntil(() => adminUpstreams(cluster), (view) => rowOf(view, 'a2').vllm_waiting_requests === 2 && rowOf(view, 'a1').vllm_waiting_requests === 0, {
          what: 'the queue lengths scraped from /metrics',
        });
        for (let index = 0; index < 8; index += 1) {
          const reply = await sendChat(cluster);
          expect(reply.status, reply.text).toBe(200);
          expect(servedBy(cluster.sims, reply.requestId)).toBe('a1');
        }
      } finally {
        direct.abort();
        await Promise.all(directCalls);
        a2.update({ maxRunning: 256 });
        await a2.waitForStats((stats) => stats.running === 0 && stats.waiting === 0);
      }
    });
  });

  describe('conversation affinity', () => {
    it('keeps the turns of one conversation on one replica while loads are equal, and moves them when it is overloaded', async () => {
      const user = await newUser(cluster.app);
      const turn = async (conversationId: string | null, index: number): Promise<{ conversationId: string; server: string }> => {
        const requestId = `affinity-${index}-${Date.now()}`;
        const body: Record<string, unknown> = { model: MODEL_A, messages: [{ role: 'user', content: `turn ${index}` }], max_tokens: 6 };
        if (conversationId !== null) body.conversation_id = conversationId;
        const stream = await streamTurn(cluster, { token: user.token, body, headers: { 'x-request-id': requestId } });
        expect(stream.done).toBe(true);
        expect(stream.errors).toEqual([]);
        return { conversationId: stream.opening!.conversation_id!, server: servedBy(cluster.sims, requestId) };
      };

      const first = await turn(null, 0);
      const servers = [first.server];
      for (let index = 1; index < 6; index += 1) servers.push((await turn(first.conversationId, index)).server);
      expect(servers).toEqual(Array<string>(6).fill(first.server));

      // Busier by more than the slack: the conversation goes where there is room.
      const preferred = first.server as 'a1' | 'a2';
      const other = preferred === 'a1' ? 'a2' : 'a1';
      const held = await holdOn(preferred, 4);
      try {
        expect((await turn(first.conversationId, 6)).server).toBe(other);
      } finally {
        await releaseAll(held);
      }
      expect((await turn(first.conversationId, 7)).server).toBe(preferred);
    });
  });

  describe('what the gateway shows', () => {
    it('GET /api/admin/upstreams lists each server with its models, state, load and error rate, and the aliases', async () => {
      const view = await adminUpstreams(cluster);
      expect(view.data.map((row) => row.name)).toEqual(['a1', 'a2', 'b1']);
      expect(view.aliases).toEqual({ fast: MODEL_A, smart: MODEL_B });
      expect(rowOf(view, 'a1')).toMatchObject({ url: cluster.sims.a1!.url, healthy: true, breaker: 'closed', in_flight: 0, error_rate: 0, weight: 1, max_concurrency: null });
      // A trailing /v1 in the file is the same server.
      expect(rowOf(view, 'a2').url).toBe(cluster.sims.a2!.url);
      expect([...rowOf(view, 'a1').models].sort()).toEqual([MODEL_A, LORA_A].sort());
      expect(rowOf(view, 'a2').models).toEqual([MODEL_A]);
      expect(rowOf(view, 'b1').models).toEqual([MODEL_B]);
      expect(JSON.stringify(view)).not.toContain('secret-of-b1');
    });

    it('GET /api/admin/upstreams is for admins only: 401 without a credential, 403 for a user', async () => {
      const anonymous = await cluster.app.inject({ method: 'GET', url: '/api/admin/upstreams' });
      expect(anonymous.statusCode).toBe(401);
      const user = await newCaller(cluster.app);
      for (const credential of [user.accessToken, user.apiKey]) {
        const response = await cluster.app.inject({ method: 'GET', url: '/api/admin/upstreams', headers: bearer(credential) });
        expect(response.statusCode, response.body).toBe(403);
        expect(response.json<{ error: { code: string } }>().error.code).toBe('forbidden');
      }
    });

    it('/health and /metrics show each server; an ejected one is down, gets no traffic, and comes back by itself', async () => {
      const up = await healthUpstreams(cluster.app);
      expect(up.map((entry) => [entry.name, entry.status, entry.breaker])).toEqual([
        ['a1', 'up', 'closed'],
        ['a2', 'up', 'closed'],
        ['b1', 'up', 'closed'],
      ]);
      const before = await metricsText(cluster.url);
      for (const name of ['a1', 'a2', 'b1']) {
        expect(metricSum(before, 'upstream_healthy', { upstream: name })).toBe(1);
        expect(metricSum(before, 'upstream_breaker_state', { upstream: name })).toBe(0);
        expect(metricSum(before, 'upstream_in_flight_requests', { upstream: name })).toBe(0);
      }

      const ejected = await ejectByHealth('a2');
      try {
        const down = await healthUpstreams(cluster.app);
        expect(down.find((entry) => entry.name === 'a2')?.status).toBe('down');
        expect(metricSum(await metricsText(cluster.url), 'upstream_healthy', { upstream: 'a2' })).toBe(0);
        for (let index = 0; index < 6; index += 1) {
          const reply = await sendChat(cluster);
          expect(reply.status, reply.text).toBe(200);
          expect(servedBy(cluster.sims, reply.requestId)).toBe('a1');
        }
      } finally {
        await ejected.restore();
      }
      expect(metricSum(await metricsText(cluster.url), 'upstream_healthy', { upstream: 'a2' })).toBe(1);
      const seen = new Set<string>();
      for (let index = 0; index < 20 && seen.size < 2; index += 1) {
        const reply = await sendChat(cluster);
        expect(reply.status, reply.text).toBe(200);
        seen.add(servedBy(cluster.sims, reply.requestId));
      }
      expect(seen).toEqual(new Set(['a1', 'a2']));
    });
  });
});
