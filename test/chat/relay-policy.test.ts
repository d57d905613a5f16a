// What the relay lets through and what it owns: authentication, fields passed to vLLM untouched,
// fields only the gateway sets (cache_salt, priority, request_id, kv_transfer_params, the upstream
// key), validation that stops a request before vLLM, and vLLM's own 4xx relayed as envelopes.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCredentials, adminEnvironment, login } from '../helpers/auth-client.js';
import {
  CHAT_PATH,
  COMPLETIONS_PATH,
  callGateway,
  callSimulator,
  chatMessages,
  codesWithStatus,
  expectErrorReply,
  newCaller,
  newRequestId,
  startRelay,
  upstreamRequestFor,
  upstreamRequestsFor,
  type Caller,
  type HttpReply,
  type Relay,
} from '../helpers/relay-fixtures.js';

const TINY_MODEL = 'sim-tiny-context';

describe('relay policy', () => {
  let relay: Relay;
  let caller: Caller;

  beforeAll(async () => {
    relay = await startRelay({
      backend: 'embedded',
      environment: { MAX_TOKENS_CAP: '100', MAX_CHOICES: '2', BODY_LIMIT_BYTES: '8192' },
      simulator: {
        models: [
          { id: 'sim-llama-3-8b', maxModelLen: 8192 },
          { id: TINY_MODEL, maxModelLen: 64 },
        ],
      },
    });
    caller = await newCaller(relay.app);
  });

  afterAll(async () => {
    await relay.close();
  });

  function post(options: { path?: string; body: unknown; requestId: string; credential?: string | null; headers?: Record<string, string> }): Promise<HttpReply> {
    return callGateway({
      url: relay.url,
      path: options.path ?? CHAT_PATH,
      body: options.body,
      credential: options.credential === undefined ? caller.apiKey : options.credential,
      headers: { 'x-request-id': options.requestId, ...options.headers },
    });
  }

  function expectNothingUpstream(requestId: string): void {
    expect(upstreamRequestsFor(relay.simulator, requestId)).toEqual([]);
  }

  describe('authentication', () => {
    it('answers 401 with the envelope on every relay route without a credential, and calls vLLM for nothing', async () => {
      const requestId = newRequestId();
      const chatBody = { model: 'sim-llama-3-8b', messages: chatMessages('hi') };
      expectErrorReply(await post({ body: chatBody, requestId, credential: null }), 401, 'unauthorized');
      expectErrorReply(await post({ path: COMPLETIONS_PATH, body: { model: 'sim-llama-3-8b', prompt: 'hi' }, requestId, credential: null }), 401, 'unauthorized');
      for (const path of ['/v1/models', '/api/models']) {
        const reply = await callGateway({ url: relay.url, path, headers: { 'x-request-id': requestId } });
        expectErrorReply(reply, 401, 'unauthorized');
        expect(reply.headers.get('www-authenticate') ?? '').toMatch(/^Bearer/);
      }
      expectNothingUpstream(requestId);
    });

    it('answers 401 invalid_api_key for an unknown key', async () => {
      const requestId = newRequestId();
      const reply = await post({
        body: { model: 'sim-llama-3-8b', messages: chatMessages('hi') },
        requestId,
        credential: `vcg_${randomBytes(24).toString('base64url')}`,
      });
      expectErrorReply(reply, 401, 'invalid_api_key');
      expectNothingUpstream(requestId);
    });

    it('accepts an access token as well as an API key', async () => {
      const requestId = newRequestId();
      const reply = await post({ body: { model: 'sim-llama-3-8b', messages: chatMessages('hi'), max_tokens: 3 }, requestId, credential: caller.accessToken });
      expect(reply.status, reply.text).toBe(200);
      upstreamRequestFor(relay.simulator, requestId);
    });
  });

  describe('fields', () => {
    it('passes unknown and vLLM extra fields to vLLM unchanged', async () => {
      const extras = {
        top_k: 40,
        min_p: 0.05,
        repetition_penalty: 1.1,
        length_penalty: 1,
        min_tokens: 1,
        ignore_eos: false,
        stop_token_ids: [7, 9],
        skip_special_tokens: false,
        structured_outputs: { choice: ['yes', 'no'] },
        guided_json: { type: 'object', properties: { answer: { type: 'string' } } },
        chat_template_kwargs: { enable_thinking: false },
        sim_fault: { delay_ms: 0 },
        vendor_extension: { nested: [1, 'two', { three: null }] },
      };
      const messages = [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello', name: 'alice', x_note: { kept: true } },
      ];
      const requestId = newRequestId();
      const reply = await post({ body: { model: 'sim-llama-3-8b', messages, seed: 4, max_tokens: 5, temperature: 0.7, ...extras }, requestId });
      expect(reply.status, reply.text).toBe(200);
      const upstream = upstreamRequestFor(relay.simulator, requestId).body;
      expect(upstream).toMatchObject({ model: 'sim-llama-3-8b', seed: 4, max_tokens: 5, temperature: 0.7 });
      expect(upstream.messages).toEqual(messages);
      for (const [field, value] of Object.entries(extras)) expect(upstream[field], field).toEqual(value);
    });

    it('passes completions extras through too', async () => {
      const requestId = newRequestId();
      const extras = { top_k: 5, guided_json: { type: 'string' }, echo: false, vendor_extension: 'kept' };
      const reply = await post({ path: COMPLETIONS_PATH, body: { model: 'sim-llama-3-8b', prompt: 'Count:', max_tokens: 4, ...extras }, requestId });
      expect(reply.status, reply.text).toBe(200);
      const upstream = upstreamRequestFor(relay.simulator, requestId).body;
      expect(upstream).toMatchObject({ model: 'sim-llama-3-8b', prompt: 'Count:', max_tokens: 4, ...extras });
    });

    it('never forwards the caller’s priority, request_id, kv_transfer_params or cache_salt', async () => {
      const requestId = newRequestId();
      const reply = await post({
        body: {
          model: 'sim-llama-3-8b',
          messages: chatMessages('Let me jump the queue'),
          max_tokens: 3,
          priority: -1000,
          request_id: 'caller-chosen-id',
          kv_transfer_params: { do_remote_decode: true, remote_host: '10.0.0.1' },
          cache_salt: 'caller-salt',
        },
        requestId,
      });
      expect(reply.status, reply.text).toBe(200);
      const upstream = upstreamRequestFor(relay.simulator, requestId).body;
      // Without VLLM_PRIORITY_BY_ROLE the gateway sets no priority at all.
      expect(upstream).not.toHaveProperty('priority');
      expect(upstream).not.toHaveProperty('request_id');
      expect(upstream).not.toHaveProperty('kv_transfer_params');
      expect(typeof upstream.cache_salt).toBe('string');
      expect(upstream.cache_salt).not.toBe('caller-salt');
      expect(String(upstream.cache_salt).length).toBeGreaterThan(0);
      expect(JSON.parse(reply.text)).toMatchObject({ id: `chatcmpl-${requestId}` });
    });

    it('salts the prefix cache per user: one salt for all of a user’s requests, another for another user', async () => {
      const other = await newCaller(relay.app);
      const saltOf = async (options: { credential: string; path?: string }): Promise<unknown> => {
        const requestId = newRequestId();
        const body = options.path === COMPLETIONS_PATH ? { model: 'sim-llama-3-8b', prompt: 'salt', max_tokens: 2 } : { model: 'sim-llama-3-8b', messages: chatMessages('salt'), max_tokens: 2, cache_salt: 'mine' };
        const reply = await post({ body, requestId, credential: options.credential, ...(options.path === undefined ? {} : { path: options.path }) });
        expect(reply.status, reply.text).toBe(200);
        return upstreamRequestFor(relay.simulator, requestId).body.cache_salt;
      };
      const first = await saltOf({ credential: caller.apiKey });
      const second = await saltOf({ credential: caller.apiKey });
      const byAccessToken = await saltOf({ credential: caller.accessToken });
      const onCompletions = await saltOf({ credential: caller.apiKey, path: COMPLETIONS_PATH });
      const othersSalt = await saltOf({ credential: other.apiKey });
      expect(typeof first).toBe('string');
      expect(second).toBe(first);
      expect(byAccessToken).toBe(first);
      expect(onCompletions).toBe(first);
      expect(typeof othersSalt).toBe('string');
      expect(othersSalt).not.toBe(first);
      expect(first).not.toBe('mine');
    });

    it('never sends the caller’s credential to vLLM (no VLLM_API_KEY: no Authorization at all)', async () => {
      for (const credential of [caller.apiKey, caller.accessToken]) {
        const requestId = newRequestId();
        const reply = await post({ body: { model: 'sim-llama-3-8b', messages: chatMessages('secret?'), max_tokens: 2 }, requestId, credential });
        expect(reply.status, reply.text).toBe(200);
        const upstream = upstreamRequestFor(relay.simulator, requestId);
        expect(upstream.headers.authorization).toBeUndefined();
        expect(JSON.stringify(upstream.headers)).not.toContain(credential);
        expect(upstream.rawBody).not.toContain(credential);
      }
    });
  });

  describe('validation before vLLM', () => {
    const chat = (fields: Record<string, unknown>): Record<string, unknown> => ({ model: 'sim-llama-3-8b', messages: chatMessages('hi'), ...fields });
    const cases: Array<{ name: string; path: string; body: Record<string, unknown>; param: string | RegExp; range?: boolean }> = [
      { name: 'temperature 3', path: CHAT_PATH, body: chat({ temperature: 3 }), param: 'temperature', range: true },
      { name: 'temperature -0.1', path: CHAT_PATH, body: chat({ temperature: -0.1 }), param: 'temperature', range: true },
      { name: 'top_p 1.5', path: CHAT_PATH, body: chat({ top_p: 1.5 }), param: 'top_p' },
      { name: 'max_tokens 0', path: CHAT_PATH, body: chat({ max_tokens: 0 }), param: 'max_tokens' },
      { name: 'max_tokens above MAX_TOKENS_CAP', path: CHAT_PATH, body: chat({ max_tokens: 101 }), param: 'max_tokens' },
      // Not a number at all: must not slip through as "no limit" (vLLM would then generate to the context's end).
      { name: 'max_tokens false', path: CHAT_PATH, body: chat({ max_tokens: false }), param: 'max_tokens' },
      { name: 'n 0', path: CHAT_PATH, body: chat({ n: 0 }), param: 'n' },
      { name: 'n above MAX_CHOICES', path: CHAT_PATH, body: chat({ n: 3 }), param: 'n' },
      { name: 'empty messages', path: CHAT_PATH, body: chat({ messages: [] }), param: 'messages' },
      { name: 'a wizard message', path: CHAT_PATH, body: chat({ messages: [{ role: 'wizard', content: 'abracadabra' }] }), param: /^messages(\[0\]|\.0)(\.role)?$/ },
      { name: 'missing messages', path: CHAT_PATH, body: { model: 'sim-llama-3-8b' }, param: 'messages' },
      { name: 'completions without prompt', path: COMPLETIONS_PATH, body: { model: 'sim-llama-3-8b', max_tokens: 3 }, param: 'prompt' },
      { name: 'completions max_tokens above MAX_TOKENS_CAP', path: COMPLETIONS_PATH, body: { model: 'sim-llama-3-8b', prompt: 'x', max_tokens: 101 }, param: 'max_tokens' },
      { name: 'completions temperature 3', path: COMPLETIONS_PATH, body: { model: 'sim-llama-3-8b', prompt: 'x', temperature: 3 }, param: 'temperature', range: true },
    ];

    it.each(cases)('refuses $name with 400 validation_failed naming the field', async ({ path, body, param, range }) => {
      for (const stream of [false, true]) {
        const requestId = newRequestId();
        const reply = await post({ path, body: { ...body, stream }, requestId });
        const envelope = expectErrorReply(reply, 400, 'validation_failed');
        if (typeof param === 'string') expect(envelope.error.param).toBe(param);
        else expect(envelope.error.param ?? '').toMatch(param);
        if (range === true) {
          // The message states the allowed range, 0 to 2.
          expect(envelope.error.message).toMatch(/(^|[^\d.])0(\.0+)?([^\d.]|$)/);
          expect(envelope.error.message).toMatch(/(^|[^\d.])2(\.0+)?([^\d.]|$)/);
        }
        expectNothingUpstream(requestId);
      }
    });

    it('refuses a body that is not JSON with 400 invalid_json', async () => {
      const requestId = newRequestId();
      const reply = await post({ body: '{"model": "sim-llama-3-8b", "messages": [', requestId });
      expectErrorReply(reply, 400, 'invalid_json');
      expectNothingUpstream(requestId);
    });

    it('refuses a body over BODY_LIMIT_BYTES with 413', async () => {
      const requestId = newRequestId();
      const reply = await post({ body: chat({ messages: chatMessages('x'.repeat(9000)) }), requestId });
      expectErrorReply(reply, 413, 'payload_too_large');
      expectNothingUpstream(requestId);
    });

    it.each(['text/plain', 'application/x-www-form-urlencoded'])('refuses a body sent as %s with 415', async (contentType) => {
      const requestId = newRequestId();
      const reply = await post({ body: JSON.stringify(chat({})), requestId, headers: { 'content-type': contentType } });
      expectErrorReply(reply, 415, 'unsupported_media_type');
      expectNothingUpstream(requestId);
    });

    it('answers 400 with the envelope for stream_options without stream', async () => {
      const requestId = newRequestId();
      const reply = await post({ body: chat({ stream_options: { include_usage: true } }), requestId });
      expectErrorReply(reply, 400, codesWithStatus(400));
    });
  });

  describe('vLLM’s own errors', () => {
    it('relays an unknown model as 404 model_not_found with vLLM’s message, as JSON also for a stream', async () => {
      const model = `no-such-model-${randomBytes(4).toString('hex')}`;
      const direct = await callSimulator({ simulator: relay.simulator, path: CHAT_PATH, body: { model, messages: chatMessages('hi') }, requestId: newRequestId() });
      expect(direct.status).toBe(404);
      const vllmMessage = (JSON.parse(direct.text) as { error: { message: string } }).error.message;
      for (const stream of [false, true]) {
        const reply = await post({ body: { model, messages: chatMessages('hi'), stream }, requestId: newRequestId() });
        const envelope = expectErrorReply(reply, 404, 'model_not_found');
        expect(envelope.error.message).toContain(vllmMessage);
        expect(reply.headers.get('content-type') ?? '').not.toMatch(/event-stream/);
      }
      const completion = await post({ path: COMPLETIONS_PATH, body: { model, prompt: 'hi' }, requestId: newRequestId() });
      expectErrorReply(completion, 404, 'model_not_found');
    });

    it('relays a prompt longer than the context as 400 context_length_exceeded with vLLM’s message', async () => {
      const body = { model: TINY_MODEL, messages: chatMessages('far too long for sixty-four tokens '.repeat(12)) };
      const direct = await callSimulator({ simulator: relay.simulator, path: CHAT_PATH, body, requestId: newRequestId() });
      expect(direct.status).toBe(400);
      const vllmMessage = (JSON.parse(direct.text) as { error: { message: string } }).error.message;
      expect(vllmMessage).toContain('context length');
      for (const stream of [false, true]) {
        const requestId = newRequestId();
        const reply = await post({ body: { ...body, stream }, requestId });
        const envelope = expectErrorReply(reply, 400, 'context_length_exceeded');
        expect(envelope.error.message).toContain(vllmMessage);
      }
      const completion = await post({ path: COMPLETIONS_PATH, body: { model: TINY_MODEL, prompt: 'far too long '.repeat(40) }, requestId: newRequestId() });
      expectErrorReply(completion, 400, 'context_length_exceeded');
    });

    it('relays max_tokens that does not fit the context (vLLM’s other context-length 400) as context_length_exceeded', async () => {
      const body = { model: TINY_MODEL, messages: chatMessages('short'), max_tokens: 90 };
      const direct = await callSimulator({ simulator: relay.simulator, path: CHAT_PATH, body, requestId: newRequestId() });
      expect(direct.status).toBe(400);
      const vllmMessage = (JSON.parse(direct.text) as { error: { message: string } }).error.message;
      const reply = await post({ body, requestId: newRequestId() });
      const envelope = expectErrorReply(reply, 400, 'context_length_exceeded');
      expect(envelope.error.message).toContain(vllmMessage);
    });
  });
});

describe('relay policy with an upstream key and priorities by role', () => {
  const upstreamKey = `sim-key-${randomBytes(8).toString('hex')}`;
  let relay: Relay;

  beforeAll(async () => {
    relay = await startRelay({
      backend: 'embedded',
      environment: { VLLM_API_KEY: upstreamKey, VLLM_PRIORITY_BY_ROLE: 'admin=-10,user=5', ...adminEnvironment },
      simulator: { apiKey: upstreamKey },
    });
  });

  afterAll(async () => {
    await relay.close();
  });

  it('sends VLLM_API_KEY to vLLM instead of the caller’s credential', async () => {
    const caller = await newCaller(relay.app);
    const requestId = newRequestId();
    const reply = await callGateway({
      url: relay.url,
      path: CHAT_PATH,
      body: { model: 'sim-llama-3-8b', messages: chatMessages('hi'), max_tokens: 3 },
      credential: caller.apiKey,
      headers: { 'x-request-id': requestId },
    });
    // The simulator answers 401 to any other Authorization, so a 200 already says the key was right.
    expect(reply.status, reply.text).toBe(200);
    const upstream = upstreamRequestFor(relay.simulator, requestId);
    expect(upstream.headers.authorization).toBe(`Bearer ${upstreamKey}`);
    expect(JSON.stringify(upstream.headers)).not.toContain(caller.apiKey);

    const models = await callGateway({ url: relay.url, path: '/v1/models', credential: caller.apiKey });
    expect(models.status, models.text).toBe(200);
  });

  it('sets priority from the caller’s role and ignores the caller’s own', async () => {
    const user = await newCaller(relay.app);
    const admin = await login(relay.app, adminCredentials);
    const priorityFor = async (credential: string, callerPriority: number): Promise<unknown> => {
      const requestId = newRequestId();
      const reply = await callGateway({
        url: relay.url,
        path: CHAT_PATH,
        body: { model: 'sim-llama-3-8b', messages: chatMessages('who goes first?'), max_tokens: 2, priority: callerPriority },
        credential,
        headers: { 'x-request-id': requestId },
      });
      expect(reply.status, reply.text).toBe(200);
      return upstreamRequestFor(relay.simulator, requestId).body.priority;
    };
    expect(await priorityFor(admin.access_token, 99)).toBe(-10);
    expect(await priorityFor(user.apiKey, -100)).toBe(5);
    expect(await priorityFor(user.accessToken, 0)).toBe(5);
  });
});
