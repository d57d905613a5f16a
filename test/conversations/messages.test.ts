// GET /api/conversations/{id}/messages: chronological, cursor-paged, and each message with its
// status, model, token counts and timings as the turn recorded them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { expectError, isoTimestampPattern, uuidPattern } from '../helpers/auth-client.js';
import {
  completeTurn,
  createConversation,
  marker,
  messagesRequest,
  newUser,
  settledMessages,
  SIM_MODEL,
  startChatGateway,
  type ChatCompletionBody,
  type ChatGateway,
  type ListBody,
  type MessageBody,
} from '../helpers/chat-fixtures.js';

const messageFields = [
  'completion_tokens',
  'content',
  'conversation_id',
  'created_at',
  'duration_ms',
  'finish_reason',
  'id',
  'model',
  'prompt_tokens',
  'role',
  'status',
  'status_reason',
  'ttft_ms',
];

describe.each(backends)('conversations: messages (%s)', (backend) => {
  let gateway: ChatGateway;

  beforeAll(async () => {
    gateway = await startChatGateway({ backend });
  });

  afterAll(async () => {
    await gateway.close();
  });

  async function conversationWithTurns(token: string, count: number): Promise<{ id: string; sent: string[]; answers: ChatCompletionBody[] }> {
    const conversation = await createConversation(gateway.app, token, { title: 'Three turns' });
    const sent: string[] = [];
    const answers: ChatCompletionBody[] = [];
    for (let turn = 0; turn < count; turn++) {
      const content = marker(`turn-${turn}`);
      sent.push(content);
      answers.push(await completeTurn(gateway, { token, body: { conversation_id: conversation.id, messages: [{ role: 'user', content }], max_tokens: 3 + turn, ignore_eos: true } }));
    }
    return { id: conversation.id, sent, answers };
  }

  it('lists the messages oldest first, each with status, model, tokens and timings', async () => {
    const user = await newUser(gateway.app);
    const { id, sent, answers } = await conversationWithTurns(user.token, 3);
    const messages = await settledMessages(gateway.app, user.token, id);

    expect(messages.map((message) => message.role)).toEqual(['user', 'assistant', 'user', 'assistant', 'user', 'assistant']);
    expect(messages.filter((message) => message.role === 'user').map((message) => message.content)).toEqual(sent);
    expect(messages.filter((message) => message.role === 'assistant').map((message) => message.id)).toEqual(answers.map((answer) => answer.message_id));
    for (let index = 1; index < messages.length; index++) {
      expect(Date.parse(messages[index]!.created_at)).toBeGreaterThanOrEqual(Date.parse(messages[index - 1]!.created_at));
    }

    for (const message of messages) {
      expect(Object.keys(message).sort()).toEqual(messageFields);
      expect(message.id).toMatch(uuidPattern);
      expect(message.conversation_id).toBe(id);
      expect(message.created_at).toMatch(isoTimestampPattern);
      expect(message.status).toBe('complete');
    }
    for (const [turn, answer] of answers.entries()) {
      const stored = messages.find((message) => message.id === answer.message_id)!;
      expect(stored).toMatchObject({
        role: 'assistant',
        content: answer.choices[0]!.message.content,
        status: 'complete',
        finish_reason: 'length',
        model: SIM_MODEL,
        prompt_tokens: answer.usage!.prompt_tokens,
        completion_tokens: 3 + turn,
      });
      expect(stored.content.length).toBeGreaterThan(0);
      expect(Number.isInteger(stored.duration_ms)).toBe(true);
      expect(stored.duration_ms).toBeGreaterThanOrEqual(0);
    }
  });

  it('pages with a cursor, oldest first, every message once', async () => {
    const user = await newUser(gateway.app);
    const { id } = await conversationWithTurns(user.token, 3);
    const everything = await settledMessages(gateway.app, user.token, id);
    expect(everything).toHaveLength(6);

    const first = await messagesRequest(gateway.app, user.token, id, '?limit=4');
    expect(first.statusCode, first.body).toBe(200);
    const firstPage = first.json<ListBody<MessageBody>>();
    expect(firstPage.data).toHaveLength(4);
    expect(typeof firstPage.next_cursor).toBe('string');

    const second = await messagesRequest(gateway.app, user.token, id, `?limit=4&cursor=${encodeURIComponent(firstPage.next_cursor!)}`);
    expect(second.statusCode, second.body).toBe(200);
    const secondPage = second.json<ListBody<MessageBody>>();
    expect(secondPage.next_cursor).toBeNull();
    expect([...firstPage.data, ...secondPage.data].map((message) => message.id)).toEqual(everything.map((message) => message.id));

    const single = await messagesRequest(gateway.app, user.token, id, '?limit=1');
    expect(single.json<ListBody<MessageBody>>().data.map((message) => message.id)).toEqual([everything[0]!.id]);
  });

  it('an empty conversation has an empty first page', async () => {
    const user = await newUser(gateway.app);
    const conversation = await createConversation(gateway.app, user.token);
    const response = await messagesRequest(gateway.app, user.token, conversation.id);
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json<ListBody<MessageBody>>()).toEqual({ data: [], next_cursor: null });
  });

  it('refuses a bad limit or a made-up cursor with 400', async () => {
    const user = await newUser(gateway.app);
    const conversation = await createConversation(gateway.app, user.token);
    for (const query of ['?limit=0', '?limit=101', '?limit=x', '?cursor=not-a-cursor', `?cursor=${Buffer.from('{"p":"first"}').toString('base64url')}`]) {
      expectError(await messagesRequest(gateway.app, user.token, conversation.id, query), 400, 'validation_failed');
    }
  });
});
