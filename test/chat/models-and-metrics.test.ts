// The model list (vLLM's cards, LoRA adapters included, briefly cached) and the relay's Prometheus
// metrics: requests, latencies, tokens, active and aborted streams, upstream errors — with labels
// that never carry who called, nor a model name an attacker made up.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHAT_PATH,
  COMPLETIONS_PATH,
  SIM_CREATED,
  callGateway,
  chatMessages,
  countContentEvents,
  metricSamples,
  metricSum,
  metricsText,
  newCaller,
  newRequestId,
  openRawPost,
  readUntil,
  startRelay,
  type Caller,
  type Relay,
} from '../helpers/relay-fixtures.js';

interface ModelCard {
  id: string;
  object: string;
  created: number;
  owned_by: string;
  root: string;
  parent: string | null;
  max_model_len: number | null;
}

const BASE_MODEL = 'sim-llama-3-8b';
const LORA_MODEL = 'sim-lora-sql';

describe('relay models and metrics', () => {
  let relay: Relay;
  let caller: Caller;

  beforeAll(async () => {
    relay = await startRelay({
      backend: 'embedded',
      simulator: {
        models: [
          { id: BASE_MODEL, maxModelLen: 8192 },
          { id: LORA_MODEL, maxModelLen: null, parent: BASE_MODEL },
        ],
      },
    });
    caller = await newCaller(relay.app);
  });

  afterAll(async () => {
    await relay.close();
  });

  function modelListCalls(): number {
    return relay.simulator.received.filter((entry) => entry.method === 'GET' && entry.path === '/v1/models').length;
  }

  describe('models', () => {
    it('GET /v1/models answers vLLM’s list: base model and LoRA cards', async () => {
      const reply = await callGateway({ url: relay.url, path: '/v1/models', credential: caller.apiKey });
      expect(reply.status, reply.text).toBe(200);
      const list = JSON.parse(reply.text) as { object: string; data: ModelCard[] };
      expect(list.object).toBe('list');
      const direct = JSON.parse(await (await fetch(`${relay.simulator.url}/v1/models`)).text()) as { data: ModelCard[] };
      const pick = (card: ModelCard) => ({
        id: card.id,
        object: card.object,
        created: card.created,
        owned_by: card.owned_by,
        root: card.root,
        parent: card.parent,
        max_model_len: card.max_model_len,
      });
      expect(list.data.map(pick)).toEqual(direct.data.map(pick));
      expect(list.data.find((card) => card.id === BASE_MODEL)).toMatchObject({ object: 'model', parent: null, max_model_len: 8192, root: BASE_MODEL, created: SIM_CREATED });
      expect(list.data.find((card) => card.id === LORA_MODEL)).toMatchObject({ object: 'model', parent: BASE_MODEL, root: `/loras/${LORA_MODEL}` });
    });

    it('GET /api/models answers the same data to an access token', async () => {
      const viaV1 = JSON.parse((await callGateway({ url: relay.url, path: '/v1/models', credential: caller.apiKey })).text) as { data: ModelCard[] };
      const reply = await callGateway({ url: relay.url, path: '/api/models', credential: caller.accessToken });
      expect(reply.status, reply.text).toBe(200);
      const viaApi = JSON.parse(reply.text) as { data: ModelCard[] };
      expect(viaApi.data).toEqual(viaV1.data);
    });

    it('caches the list briefly: a second call within a second does not reach vLLM', async () => {
      const first = await callGateway({ url: relay.url, path: '/v1/models', credential: caller.apiKey });
      expect(first.status).toBe(200);
      // The first call may itself be served from a copy cached by the tests above.
      const afterFirst = modelListCalls();
      expect(afterFirst).toBeGreaterThan(0);
      for (const [path, credential] of [
        ['/v1/models', caller.apiKey],
        ['/api/models', caller.accessToken],
        ['/v1/models', caller.apiKey],
        ['/api/models', caller.accessToken],
      ] as const) {
        expect((await callGateway({ url: relay.url, path, credential })).status).toBe(200);
      }
      // Four more calls within a second: none reaches vLLM (one background refresh may happen to fall in between).
      expect(modelListCalls() - afterFirst).toBeLessThanOrEqual(1);
    });
  });

  describe('metrics', () => {
    it('counts requests, latencies and tokens by model after traffic', async () => {
      const before = await metricsText(relay.url);
      const plain = await callGateway({
        url: relay.url,
        path: CHAT_PATH,
        body: { model: BASE_MODEL, messages: chatMessages('metrics please'), max_tokens: 6, ignore_eos: true },
        credential: caller.apiKey,
      });
      expect(plain.status, plain.text).toBe(200);
      const streamed = await callGateway({
        url: relay.url,
        path: COMPLETIONS_PATH,
        body: { model: BASE_MODEL, prompt: 'metrics', max_tokens: 7, stream: true },
        credential: caller.apiKey,
      });
      expect(streamed.status, streamed.text).toBe(200);
      const plainUsage = (JSON.parse(plain.text) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage;
      const after = await metricsText(relay.url);

      const delta = (name: string, labels: Record<string, string> = {}): number => metricSum(after, name, labels) - metricSum(before, name, labels);
      expect(delta('chat_requests_total', { model: BASE_MODEL, status: 'ok' })).toBe(2);
      expect(delta('chat_request_duration_seconds_count', { model: BASE_MODEL })).toBe(2);
      expect(delta('chat_time_to_first_token_seconds_count')).toBeGreaterThanOrEqual(1);
      expect(delta('chat_inter_token_latency_seconds_count')).toBeGreaterThanOrEqual(1);
      expect(delta('chat_completion_tokens_total', { model: BASE_MODEL })).toBe(plainUsage.completion_tokens + 7);
      expect(delta('chat_prompt_tokens_total', { model: BASE_MODEL })).toBeGreaterThan(plainUsage.prompt_tokens);
      for (const name of ['chat_request_duration_seconds', 'chat_time_to_first_token_seconds', 'chat_inter_token_latency_seconds']) {
        expect(after).toContain(`# TYPE ${name} histogram`);
      }
      expect(after).toContain('# TYPE chat_active_streams gauge');
    });

    it('shows an open stream in chat_active_streams, and 0 once it is gone', async () => {
      relay.simulator.update({ interTokenMs: 50 });
      const exchange = openRawPost({
        url: relay.url,
        path: CHAT_PATH,
        body: { model: BASE_MODEL, messages: chatMessages('stay a while'), max_tokens: 200, ignore_eos: true, stream: true },
        credential: caller.apiKey,
        requestId: newRequestId(),
      });
      try {
        const response = await exchange.response;
        await readUntil(response, (text) => countContentEvents(text) >= 2);
        expect(metricSum(await metricsText(relay.url), 'chat_active_streams')).toBe(1);
      } finally {
        exchange.destroy();
        relay.simulator.update({ interTokenMs: 0 });
      }
      await relay.simulator.waitForStats((stats) => stats.running === 0, 1000);
      const deadline = Date.now() + 1000;
      let active = metricSum(await metricsText(relay.url), 'chat_active_streams');
      while (active !== 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 25));
        active = metricSum(await metricsText(relay.url), 'chat_active_streams');
      }
      expect(active).toBe(0);
    });

    it('counts upstream errors by kind after a 502', async () => {
      const before = metricSum(await metricsText(relay.url), 'upstream_errors_total');
      const reply = await callGateway({
        url: relay.url,
        path: CHAT_PATH,
        body: { model: BASE_MODEL, messages: chatMessages('break'), sim_fault: { status: 500 } },
        credential: caller.apiKey,
      });
      expect(reply.status).toBe(502);
      const after = await metricsText(relay.url);
      expect(metricSum(after, 'upstream_errors_total')).toBe(before + 1);
      for (const sample of metricSamples(after, 'upstream_errors_total')) expect(sample.labels).toMatch(/kind="[^"]+"/);
    });

    it('labels an unknown model "unknown", never with the caller’s string', async () => {
      const invented = `attacker-${randomBytes(6).toString('hex')}`;
      const before = metricSum(await metricsText(relay.url), 'chat_requests_total', { model: 'unknown' });
      const reply = await callGateway({
        url: relay.url,
        path: CHAT_PATH,
        body: { model: invented, messages: chatMessages('label me') },
        credential: caller.apiKey,
      });
      expect(reply.status).toBe(404);
      const after = await metricsText(relay.url);
      expect(after).not.toContain(invented);
      expect(metricSum(after, 'chat_requests_total', { model: 'unknown' })).toBe(before + 1);
    });

    it('never puts a user id, an email or a key in any label', async () => {
      const other = await newCaller(relay.app);
      for (const credential of [other.apiKey, other.accessToken]) {
        const reply = await callGateway({
          url: relay.url,
          path: CHAT_PATH,
          body: { model: BASE_MODEL, messages: chatMessages('who am I'), max_tokens: 2 },
          credential,
        });
        expect(reply.status, reply.text).toBe(200);
      }
      const text = await metricsText(relay.url);
      expect(text).toContain('chat_requests_total');
      for (const secret of [other.userId, other.email, other.apiKey, other.apiKeyPrefix, other.apiKeyId, other.accessToken, caller.userId, caller.email, caller.apiKeyPrefix]) {
        expect(text).not.toContain(secret);
      }
    });
  });
});
