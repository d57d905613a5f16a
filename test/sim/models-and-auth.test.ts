// The simulator's model list, API-key guard and probe endpoints, as `vllm serve --api-key` behaves.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/sim/index.js';
import { CHAT_PATH, getText, postJson, userMessage } from './helpers.js';

describe('simulator models, auth and probes', () => {
  let simulator: Simulator;
  const authorization = { authorization: 'Bearer secret-key' };

  beforeAll(async () => {
    simulator = await startSimulator({
      apiKey: 'secret-key',
      created: 1760000000,
      version: '0.10.2',
      models: [
        { id: 'base-model', maxModelLen: 4096 },
        { id: 'my-lora', maxModelLen: null, parent: 'base-model' },
      ],
    });
  });

  afterAll(async () => {
    await simulator.close();
  });

  it('lists base models and LoRA adapters as vLLM model cards', async () => {
    const reply = await getText(`${simulator.url}/v1/models`, authorization);
    expect(reply.status).toBe(200);
    const list = JSON.parse(reply.text) as { object: string; data: Array<Record<string, unknown>> };
    expect(list.object).toBe('list');
    expect(list.data.map((card) => Object.keys(card))).toEqual([
      ['id', 'object', 'created', 'owned_by', 'root', 'parent', 'max_model_len', 'permission'],
      ['id', 'object', 'created', 'owned_by', 'root', 'parent', 'max_model_len', 'permission'],
    ]);
    expect(list.data[0]).toMatchObject({ id: 'base-model', object: 'model', created: 1760000000, owned_by: 'vllm', root: 'base-model', parent: null, max_model_len: 4096 });
    expect(list.data[1]).toMatchObject({ id: 'my-lora', root: '/loras/my-lora', parent: 'base-model', max_model_len: null });
    expect(list.data[0]!.permission).toEqual([expect.objectContaining({ object: 'model_permission', allow_sampling: true })]);
  });

  it('answers 401 {"error":"Unauthorized"} under /v1 without the right bearer key', async () => {
    const missing = await getText(`${simulator.url}/v1/models`);
    expect(missing.status).toBe(401);
    expect(missing.text).toBe('{"error":"Unauthorized"}');
    const wrong = await postJson({ url: `${simulator.url}${CHAT_PATH}`, body: { messages: userMessage('hi') }, headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    expect(wrong.text).toBe('{"error":"Unauthorized"}');
    const right = await postJson({ url: `${simulator.url}${CHAT_PATH}`, body: { messages: userMessage('hi'), max_tokens: 2 }, headers: authorization });
    expect(right.status).toBe(200);
  });

  it('keeps /health, /metrics, /tokenize and /version open, as vLLM does', async () => {
    const health = await getText(`${simulator.url}/health`);
    expect(health.status).toBe(200);
    expect(health.text).toBe('');
    const metrics = await getText(`${simulator.url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.text).toContain('vllm:num_requests_running{engine="0",model_name="base-model"}');
    const tokenize = await postJson({ url: `${simulator.url}/tokenize`, body: { prompt: 'hello' } });
    expect(tokenize.status).toBe(200);
    const version = await getText(`${simulator.url}/version`);
    expect(JSON.parse(version.text)).toEqual({ version: '0.10.2' });
  });

  it('answers /health 503 while set unhealthy, and can delay it', async () => {
    simulator.setHealthy(false);
    expect((await getText(`${simulator.url}/health`)).status).toBe(503);
    simulator.setHealthy(true);
    simulator.update({ healthDelayMs: 150 });
    const started = performance.now();
    expect((await getText(`${simulator.url}/health`)).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    simulator.update({ healthDelayMs: 0 });
  });

  it('records what it received, headers and parsed body included', async () => {
    simulator.clearReceived();
    await postJson({
      url: `${simulator.url}${CHAT_PATH}`,
      body: { model: 'my-lora', messages: userMessage('remember me'), max_tokens: 1, custom_field: 7 },
      headers: { ...authorization, 'x-custom': 'yes' },
    });
    const [received] = simulator.received;
    expect(received).toMatchObject({ method: 'POST', path: CHAT_PATH, body: { model: 'my-lora', custom_field: 7 } });
    expect(received!.headers['x-custom']).toBe('yes');
    expect(simulator.stats().received).toBeGreaterThan(1);
  });

  it('answers unknown paths with a 404 envelope and wrong methods with 405', async () => {
    const unknown = await getText(`${simulator.url}/v1/nothing-here`, authorization);
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.text)).toMatchObject({ error: { code: 404 } });
    const wrongMethod = await getText(`${simulator.url}${CHAT_PATH}`, authorization);
    expect(wrongMethod.status).toBe(405);
  });
});
