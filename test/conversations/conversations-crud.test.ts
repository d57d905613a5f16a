// /api/conversations: create (defaults, validation), read with message_count and last_message_at,
// partial update (validated: unknown fields and bad settings are 400 and change nothing), delete
// (204, the conversation and its messages gone).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { bearer, expectError, isoTimestampPattern, uuidPattern } from '../helpers/auth-client.js';
import {
  allMessages,
  completeTurn,
  conversationCount,
  conversationFields,
  createConversation,
  getConversation,
  marker,
  messagesRequest,
  newUser,
  SIM_MODEL,
  startChatGateway,
  type ChatGateway,
  type ConversationBody,
  type ListBody,
} from '../helpers/chat-fixtures.js';

const OTHER_MODEL = 'sim-other';

describe.each(backends)('conversations: create, read, update, delete (%s)', (backend) => {
  let gateway: ChatGateway;

  beforeAll(async () => {
    gateway = await startChatGateway({
      backend,
      simulatorOptions: { models: [{ id: SIM_MODEL, maxModelLen: 8192 }, { id: OTHER_MODEL, maxModelLen: 4096 }] },
    });
  });

  afterAll(async () => {
    await gateway.close();
  });

  it('POST creates a conversation: 201, the documented shape, empty defaults', async () => {
    const user = await newUser(gateway.app);
    const response = await gateway.app.inject({ method: 'POST', url: '/api/conversations', headers: bearer(user.token), payload: {} });
    expect(response.statusCode, response.body).toBe(201);
    const created = response.json<ConversationBody>();
    expect(Object.keys(created).sort()).toEqual(conversationFields);
    expect(created.id).toMatch(uuidPattern);
    expect(typeof created.title).toBe('string');
    expect(created.title.length).toBeGreaterThan(0);
    expect(created).toMatchObject({ model: null, system_prompt: null, settings: {}, message_count: 0, last_message_at: null });
    expect(created.created_at).toMatch(isoTimestampPattern);
    expect(created.updated_at).toMatch(isoTimestampPattern);
    expect(await getConversation(gateway.app, user.token, created.id)).toEqual(created);
  });

  it('POST keeps the title, model, system prompt and default sampling settings', async () => {
    const user = await newUser(gateway.app);
    const settings = { temperature: 0.2, top_p: 0.9, max_tokens: 64, stop: ['END'] };
    const created = await createConversation(gateway.app, user.token, { title: 'Trip planning', model: OTHER_MODEL, system_prompt: 'You are terse.', settings });
    expect(created).toMatchObject({ title: 'Trip planning', model: OTHER_MODEL, system_prompt: 'You are terse.', settings, message_count: 0 });
    expect(await getConversation(gateway.app, user.token, created.id)).toEqual(created);
  });

  it('POST refuses unknown fields and bad settings with 400, and creates nothing', async () => {
    const user = await newUser(gateway.app);
    const bad: Array<Record<string, unknown>> = [
      { title: 'x', colour: 'red' },
      { user_id: user.userId },
      { settings: { temperature: 3 } },
      { settings: { temperature: -0.5 } },
      { settings: { top_p: 1.5 } },
      { settings: { max_tokens: 0 } },
      { settings: { temperatur: 0.5 } },
      { settings: 'hot' },
      { title: 42 },
    ];
    for (const payload of bad) {
      const response = await gateway.app.inject({ method: 'POST', url: '/api/conversations', headers: bearer(user.token), payload });
      expectError(response, 400, 'validation_failed');
    }
    expect(await conversationCount(gateway.app, user.userId)).toEqual({ conversations: 0, messages: 0 });
  });

  it('GET /{id} counts the messages and tells when the last one was written', async () => {
    const user = await newUser(gateway.app);
    const conversation = await createConversation(gateway.app, user.token, { title: 'Counting' });
    const first = await completeTurn(gateway, { token: user.token, body: { conversation_id: conversation.id, messages: [{ role: 'user', content: marker('one') }], max_tokens: 4 } });
    expect(first.conversation_id).toBe(conversation.id);
    await completeTurn(gateway, { token: user.token, body: { conversation_id: conversation.id, messages: [{ role: 'user', content: marker('two') }], max_tokens: 4 } });

    const read = await getConversation(gateway.app, user.token, conversation.id);
    const messages = await allMessages(gateway.app, user.token, conversation.id);
    expect(messages).toHaveLength(4);
    expect(read.message_count).toBe(4);
    expect(read.last_message_at).toMatch(isoTimestampPattern);
    const lastWritten = Math.max(...messages.map((message) => Date.parse(message.created_at)));
    expect(Math.abs(Date.parse(read.last_message_at!) - lastWritten)).toBeLessThanOrEqual(1000);
    expect(Date.parse(read.last_message_at!)).toBeGreaterThanOrEqual(Date.parse(conversation.created_at));
  });

  it('PUT changes only the fields it is given', async () => {
    const user = await newUser(gateway.app);
    const original = await createConversation(gateway.app, user.token, { title: 'Before', model: SIM_MODEL, system_prompt: 'Be brief.', settings: { temperature: 0.2 } });

    const put = (payload: Record<string, unknown>) => gateway.app.inject({ method: 'PUT', url: `/api/conversations/${original.id}`, headers: bearer(user.token), payload });

    const renamed = await put({ title: 'After' });
    expect(renamed.statusCode, renamed.body).toBe(200);
    expect(renamed.json<ConversationBody>()).toMatchObject({ id: original.id, title: 'After', model: SIM_MODEL, system_prompt: 'Be brief.', settings: { temperature: 0.2 } });
    expect(Date.parse(renamed.json<ConversationBody>().updated_at)).toBeGreaterThanOrEqual(Date.parse(original.updated_at));

    const rewired = await put({ model: OTHER_MODEL, system_prompt: null });
    expect(rewired.statusCode, rewired.body).toBe(200);
    expect(rewired.json<ConversationBody>()).toMatchObject({ title: 'After', model: OTHER_MODEL, system_prompt: null, settings: { temperature: 0.2 } });

    const tuned = await put({ settings: { temperature: 1.1, top_p: 0.5 } });
    expect(tuned.statusCode, tuned.body).toBe(200);
    expect(tuned.json<ConversationBody>()).toMatchObject({ title: 'After', model: OTHER_MODEL, system_prompt: null, settings: { temperature: 1.1, top_p: 0.5 } });

    const read = await getConversation(gateway.app, user.token, original.id);
    expect(read).toEqual(tuned.json<ConversationBody>());
    expect(read.created_at).toBe(original.created_at);
  });

  it('PUT refuses unknown fields and bad settings with 400, and changes nothing', async () => {
    const user = await newUser(gateway.app);
    const original = await createConversation(gateway.app, user.token, { title: 'Stable', settings: { temperature: 0.7 } });
    const bad: Array<Record<string, unknown>> = [
      { title: 'Changed', owner: 'someone' },
      { message_count: 99 },
      { settings: { temperature: 3 } },
      { title: 'Changed', settings: { temperature: 3 } },
      { settings: { top_p: -1 } },
      { settings: { no_such_setting: true } },
      { title: 7 },
    ];
    for (const payload of bad) {
      const response = await gateway.app.inject({ method: 'PUT', url: `/api/conversations/${original.id}`, headers: bearer(user.token), payload });
      expectError(response, 400, 'validation_failed');
    }
    expect(await getConversation(gateway.app, user.token, original.id)).toEqual(original);
  });

  it('DELETE answers 204 and removes the conversation and its messages', async () => {
    const user = await newUser(gateway.app);
    const kept = await createConversation(gateway.app, user.token, { title: 'Kept' });
    const doomed = await createConversation(gateway.app, user.token, { title: 'Doomed' });
    await completeTurn(gateway, { token: user.token, body: { conversation_id: doomed.id, messages: [{ role: 'user', content: marker('bye') }], max_tokens: 4 } });
    expect(await allMessages(gateway.app, user.token, doomed.id)).toHaveLength(2);

    const response = await gateway.app.inject({ method: 'DELETE', url: `/api/conversations/${doomed.id}`, headers: bearer(user.token) });
    expect(response.statusCode, response.body).toBe(204);
    expect(response.body).toBe('');

    expectError(await gateway.app.inject({ method: 'GET', url: `/api/conversations/${doomed.id}`, headers: bearer(user.token) }), 404, 'not_found');
    expectError(await messagesRequest(gateway.app, user.token, doomed.id), 404, 'not_found');
    const rows = await gateway.app.gateway.database.db.selectFrom('messages').select('id').where('conversation_id', '=', doomed.id).execute();
    expect(rows).toEqual([]);

    const list = await gateway.app.inject({ method: 'GET', url: '/api/conversations', headers: bearer(user.token) });
    expect(list.json<ListBody<ConversationBody>>().data.map((conversation) => conversation.id)).toEqual([kept.id]);
    // Deleting again: it is gone.
    expectError(await gateway.app.inject({ method: 'DELETE', url: `/api/conversations/${doomed.id}`, headers: bearer(user.token) }), 404, 'not_found');
  });

  it('answers 401 without a credential', async () => {
    expectError(await gateway.app.inject({ method: 'GET', url: '/api/conversations' }), 401, 'unauthorized');
    expectError(await gateway.app.inject({ method: 'POST', url: '/api/conversations', payload: {} }), 401, 'unauthorized');
  });
});
