// Idempotency-Key: a retried send answers with the turn the first one produced (same ids, same
// text) instead of generating twice; vLLM sees one generation request. Keys are per user.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import {
  allMessages,
  call,
  completeTurn,
  generationRequestsWith,
  jsonOf,
  marker,
  newUser,
  startChatGateway,
  streamTurn,
  type ChatCompletionBody,
  type ChatGateway,
  type HttpReply,
} from '../helpers/chat-fixtures.js';

describe.each(backends)('chat API: Idempotency-Key (%s)', (backend) => {
  let gateway: ChatGateway;

  beforeAll(async () => {
    gateway = await startChatGateway({ backend });
  });

  afterAll(async () => {
    await gateway.close();
  });

  const keyHeader = () => ({ 'idempotency-key': `retry-${randomUUID()}` });

  it('JSON: a retry returns the same turn, and vLLM generates once', async () => {
    const user = await newUser(gateway.app);
    const headers = keyHeader();
    const content = marker('json-retry');
    const body = { messages: [{ role: 'user', content }], max_tokens: 6 };
    const first = await completeTurn(gateway, { token: user.token, body, headers });
    const retry = await completeTurn(gateway, { token: user.token, body, headers });

    expect(retry.conversation_id).toBe(first.conversation_id);
    expect(retry.message_id).toBe(first.message_id);
    expect(retry.choices[0]!.message.content).toBe(first.choices[0]!.message.content);
    expect(retry.object).toBe('chat.completion');
    expect(generationRequestsWith(gateway.simulator, content)).toHaveLength(1);
    expect(await allMessages(gateway.app, user.token, first.conversation_id!)).toHaveLength(2);
  });

  it('SSE: the replay’s first event names the same ids, and the text is the same', async () => {
    const user = await newUser(gateway.app);
    const headers = keyHeader();
    const content = marker('sse-retry');
    const body = { messages: [{ role: 'user', content }], max_tokens: 6 };
    const first = await streamTurn(gateway, { token: user.token, body, headers });
    const retry = await streamTurn(gateway, { token: user.token, body, headers });

    expect(retry.events[0]!.event).toBe('conversation');
    expect(retry.opening).toMatchObject({
      conversation_id: first.opening!.conversation_id,
      user_message_id: first.opening!.user_message_id,
      assistant_message_id: first.opening!.assistant_message_id,
    });
    expect(retry.content).toBe(first.content);
    expect(retry.done).toBe(true);
    expect(generationRequestsWith(gateway.simulator, content)).toHaveLength(1);
    expect(await allMessages(gateway.app, user.token, first.opening!.conversation_id!)).toHaveLength(2);
  });

  it('a retry to an existing conversation does not append the turn twice', async () => {
    const user = await newUser(gateway.app);
    const started = await completeTurn(gateway, { token: user.token, body: { messages: [{ role: 'user', content: marker('start') }], max_tokens: 3 } });
    const headers = keyHeader();
    const content = marker('append-once');
    const body = { conversation_id: started.conversation_id, messages: [{ role: 'user', content }], max_tokens: 3 };
    const first = await completeTurn(gateway, { token: user.token, body, headers });
    const retry = await completeTurn(gateway, { token: user.token, body, headers });
    expect(retry.message_id).toBe(first.message_id);
    expect(await allMessages(gateway.app, user.token, started.conversation_id!)).toHaveLength(4);
    expect(generationRequestsWith(gateway.simulator, content)).toHaveLength(1);
  });

  it('a key is the caller’s own: another user with the same key gets a turn of their own', async () => {
    const owner = await newUser(gateway.app);
    const other = await newUser(gateway.app);
    const headers = keyHeader();
    const content = marker('shared-key');
    const body = { messages: [{ role: 'user', content }], max_tokens: 4 };
    const mine = await completeTurn(gateway, { token: owner.token, body, headers });
    const theirs = await completeTurn(gateway, { token: other.token, body, headers });
    expect(theirs.conversation_id).not.toBe(mine.conversation_id);
    expect(theirs.message_id).not.toBe(mine.message_id);
    expect(generationRequestsWith(gateway.simulator, content)).toHaveLength(2);
  });

  it('a retry sent while the first is still generating does not generate again', async () => {
    const user = await newUser(gateway.app);
    const headers = keyHeader();
    const content = marker('in-flight');
    const body = { messages: [{ role: 'user', content }], max_tokens: 10, ignore_eos: true };
    gateway.simulator.update({ interTokenMs: 60 });
    try {
      const first = call(gateway, { path: '/api/chat/completions', token: user.token, body, headers });
      await gateway.simulator.waitForStats((stats) => stats.running === 1, 2000);
      const retry = await call(gateway, { path: '/api/chat/completions', token: user.token, body, headers });
      const original = await first;
      expect(original.status, original.text).toBe(200);
      // Either "still being answered" or the same turn; never a second generation.
      expect([200, 409], retry.text).toContain(retry.status);
      if (retry.status === 200) expect(jsonOf<ChatCompletionBody>(retry).message_id).toBe(jsonOf<ChatCompletionBody>(original).message_id);
      expect(generationRequestsWith(gateway.simulator, content)).toHaveLength(1);
    } finally {
      gateway.simulator.update({ interTokenMs: 0 });
    }
  });

  it('two sends with the same key at the same moment generate once', async () => {
    const user = await newUser(gateway.app);
    const headers = keyHeader();
    const content = marker('double-click');
    const body = { messages: [{ role: 'user', content }], max_tokens: 4 };
    const replies: HttpReply[] = await Promise.all([
      call(gateway, { path: '/api/chat/completions', token: user.token, body, headers }),
      call(gateway, { path: '/api/chat/completions', token: user.token, body, headers }),
    ]);
    const answered = replies.filter((reply) => reply.status === 200).map((reply) => jsonOf<ChatCompletionBody>(reply));
    expect(answered.length).toBeGreaterThanOrEqual(1);
    expect(new Set(answered.map((answer) => answer.message_id)).size).toBe(1);
    for (const reply of replies) expect([200, 409], reply.text).toContain(reply.status);
    expect(generationRequestsWith(gateway.simulator, content)).toHaveLength(1);
  });
});
