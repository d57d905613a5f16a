// Someone else's conversation, a deleted one and a malformed id all answer 404 — the same answer
// as a conversation that never existed — on every route, change nothing, and never reach vLLM.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { bearer, expectError } from '../helpers/auth-client.js';
import {
  allMessages,
  call,
  completeTurn,
  createConversation,
  expectErrorReply,
  generationRequestsWith,
  getConversation,
  marker,
  newUser,
  settledMessages,
  startChatGateway,
  type ChatGateway,
  type ChatUser,
} from '../helpers/chat-fixtures.js';

describe.each(backends)('conversations: 404 for what is not yours (%s)', (backend) => {
  let gateway: ChatGateway;

  beforeAll(async () => {
    gateway = await startChatGateway({ backend });
  });

  afterAll(async () => {
    await gateway.close();
  });

  /** Every conversation route, plus both chat endpoints, answer 404 for `id`; nothing reaches vLLM. */
  async function expectNotFoundEverywhere(caller: ChatUser, id: string): Promise<string[]> {
    const { app } = gateway;
    const headers = bearer(caller.token);
    const path = `/api/conversations/${encodeURIComponent(id)}`;
    const messages: string[] = [];
    const responses = [
      await app.inject({ method: 'GET', url: path, headers }),
      await app.inject({ method: 'PUT', url: path, headers, payload: { title: 'taken over' } }),
      await app.inject({ method: 'GET', url: `${path}/messages`, headers }),
      await app.inject({ method: 'DELETE', url: path, headers }),
    ];
    for (const response of responses) messages.push(expectError(response, 404, 'not_found').error.message);

    const needle = marker('must-not-reach-vllm');
    for (const endpoint of ['/api/chat', '/api/chat/completions']) {
      const reply = await call(gateway, { path: endpoint, token: caller.token, body: { conversation_id: id, messages: [{ role: 'user', content: needle }], max_tokens: 3 } });
      messages.push(expectErrorReply(reply, 404, 'not_found').message);
    }
    expect(generationRequestsWith(gateway.simulator, needle)).toEqual([]);
    return messages;
  }

  it('another user’s conversation: 404 everywhere, exactly as a missing one, and it stays untouched', async () => {
    const owner = await newUser(gateway.app);
    const stranger = await newUser(gateway.app);
    const conversation = await createConversation(gateway.app, owner.token, { title: 'Private', system_prompt: 'secret prompt' });
    await completeTurn(gateway, { token: owner.token, body: { conversation_id: conversation.id, messages: [{ role: 'user', content: marker('private') }], max_tokens: 3 } });
    const before = await getConversation(gateway.app, owner.token, conversation.id);
    const messagesBefore = await settledMessages(gateway.app, owner.token, conversation.id);

    const strangerAnswers = await expectNotFoundEverywhere(stranger, conversation.id);
    const missingAnswers = await expectNotFoundEverywhere(stranger, randomUUID());
    // Nothing tells a stranger the conversation exists.
    expect(strangerAnswers).toEqual(missingAnswers);

    expect(await getConversation(gateway.app, owner.token, conversation.id)).toEqual(before);
    expect(await allMessages(gateway.app, owner.token, conversation.id)).toEqual(messagesBefore);
  });

  it('a deleted conversation: 404 everywhere for its owner too', async () => {
    const owner = await newUser(gateway.app);
    const conversation = await createConversation(gateway.app, owner.token, { title: 'Short-lived' });
    await completeTurn(gateway, { token: owner.token, body: { conversation_id: conversation.id, messages: [{ role: 'user', content: marker('hello') }], max_tokens: 3 } });
    const deleted = await gateway.app.inject({ method: 'DELETE', url: `/api/conversations/${conversation.id}`, headers: bearer(owner.token) });
    expect(deleted.statusCode, deleted.body).toBe(204);

    await expectNotFoundEverywhere(owner, conversation.id);
    const list = await gateway.app.inject({ method: 'GET', url: '/api/conversations', headers: bearer(owner.token) });
    expect(list.body).not.toContain(conversation.id);
  });

  it('an id that is not a uuid: 404 everywhere, never a 400 or a 500', async () => {
    const owner = await newUser(gateway.app);
    for (const id of ['not-a-uuid', '12345', `${randomUUID()}x`, "1' or '1'='1"]) {
      await expectNotFoundEverywhere(owner, id);
    }
  });

  it('a long id that is not a uuid: 404 too, not a validation error', async () => {
    const owner = await newUser(gateway.app);
    await expectNotFoundEverywhere(owner, `${randomUUID()}-${randomUUID()}`);
  });
});
