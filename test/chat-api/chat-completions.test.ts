// POST /api/chat/completions: one JSON answer (an OpenAI chat.completion plus conversation_id and
// message_id), the turn stored like the streaming one, the conversation's model and default
// sampling settings applied unless the request says otherwise, and store: false.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { uuidPattern } from '../helpers/auth-client.js';
import {
  allMessages,
  completeTurn,
  conversationCount,
  createConversation,
  generationRequestWith,
  getConversation,
  marker,
  newUser,
  settledMessages,
  SIM_MODEL,
  startChatGateway,
  type ChatGateway,
} from '../helpers/chat-fixtures.js';

const OTHER_MODEL = 'sim-other';

describe.each(backends)('chat API: POST /api/chat/completions (%s)', (backend) => {
  let gateway: ChatGateway;

  beforeAll(async () => {
    gateway = await startChatGateway({
      backend,
      simulatorOptions: { models: [{ id: SIM_MODEL, maxModelLen: 8192 }, { id: OTHER_MODEL, maxModelLen: 8192 }] },
    });
  });

  afterAll(async () => {
    await gateway.close();
  });

  it('answers a chat.completion with conversation_id, message_id and trimmed_messages, and stores the turn', async () => {
    const user = await newUser(gateway.app);
    const content = `Plan a picnic ${marker('json')}`;
    const answer = await completeTurn(gateway, { token: user.token, body: { messages: [{ role: 'user', content }], max_tokens: 6, ignore_eos: true } });

    expect(answer.object).toBe('chat.completion');
    expect(answer.model).toBe(SIM_MODEL);
    expect(answer.choices).toHaveLength(1);
    expect(answer.choices[0]!.message.role).toBe('assistant');
    expect(answer.choices[0]!.message.content.length).toBeGreaterThan(0);
    expect(answer.choices[0]!.finish_reason).toBe('length');
    expect(answer.usage).toMatchObject({ completion_tokens: 6 });
    expect(answer.conversation_id).toMatch(uuidPattern);
    expect(answer.message_id).toMatch(uuidPattern);
    expect(answer.trimmed_messages).toBe(0);

    const conversation = await getConversation(gateway.app, user.token, answer.conversation_id!);
    expect(conversation).toMatchObject({ title: content, message_count: 2 });
    const messages = await settledMessages(gateway.app, user.token, answer.conversation_id!);
    expect(messages).toHaveLength(2);
    expect(messages[0]).toMatchObject({ role: 'user', content, status: 'complete' });
    expect(messages[1]).toMatchObject({
      id: answer.message_id,
      role: 'assistant',
      status: 'complete',
      status_reason: null,
      content: answer.choices[0]!.message.content,
      finish_reason: 'length',
      model: SIM_MODEL,
      prompt_tokens: answer.usage!.prompt_tokens,
      completion_tokens: answer.usage!.completion_tokens,
    });
    expect(Number.isInteger(messages[1]!.duration_ms)).toBe(true);
    expect(messages[1]!.duration_ms).toBeGreaterThanOrEqual(0);
  });

  it('with conversation_id, sends system prompt + history + new messages in order', async () => {
    const user = await newUser(gateway.app);
    const conversation = await createConversation(gateway.app, user.token, { title: 'JSON history', system_prompt: 'Reply in French.' });
    const first = marker('first');
    const firstAnswer = await completeTurn(gateway, { token: user.token, body: { conversation_id: conversation.id, messages: [{ role: 'user', content: first }], max_tokens: 4 } });
    expect(firstAnswer.conversation_id).toBe(conversation.id);

    const second = marker('second');
    const extra = marker('extra');
    await completeTurn(gateway, {
      token: user.token,
      body: { conversation_id: conversation.id, messages: [{ role: 'user', content: extra }, { role: 'user', content: second }], max_tokens: 4 },
    });
    const upstream = generationRequestWith(gateway.simulator, second);
    expect(upstream.body.messages.map((message) => ({ role: message.role, content: message.content }))).toEqual([
      { role: 'system', content: 'Reply in French.' },
      { role: 'user', content: first },
      { role: 'assistant', content: firstAnswer.choices[0]!.message.content },
      { role: 'user', content: extra },
      { role: 'user', content: second },
    ]);
    expect(upstream.body).not.toHaveProperty('conversation_id');
    const stored = await allMessages(gateway.app, user.token, conversation.id);
    expect(stored.map((message) => message.content).slice(0, 4)).toEqual([first, firstAnswer.choices[0]!.message.content, extra, second]);
    expect(stored).toHaveLength(5);
    expect((await getConversation(gateway.app, user.token, conversation.id)).message_count).toBe(5);
  });

  it('applies the conversation’s model and default settings; the request’s own values win', async () => {
    const user = await newUser(gateway.app);
    const conversation = await createConversation(gateway.app, user.token, {
      title: 'Defaults',
      model: OTHER_MODEL,
      settings: { temperature: 0.25, top_p: 0.5, max_tokens: 5 },
    });
    const defaults = marker('defaults');
    const answer = await completeTurn(gateway, { token: user.token, body: { conversation_id: conversation.id, messages: [{ role: 'user', content: defaults }] } });
    expect(answer.model).toBe(OTHER_MODEL);
    expect(generationRequestWith(gateway.simulator, defaults).body).toMatchObject({ model: OTHER_MODEL, temperature: 0.25, top_p: 0.5, max_tokens: 5 });

    const overridden = marker('overridden');
    await completeTurn(gateway, {
      token: user.token,
      body: { conversation_id: conversation.id, model: SIM_MODEL, temperature: 0.9, max_tokens: 3, messages: [{ role: 'user', content: overridden }] },
    });
    expect(generationRequestWith(gateway.simulator, overridden).body).toMatchObject({ model: SIM_MODEL, temperature: 0.9, top_p: 0.5, max_tokens: 3 });
  });

  it('store: false answers and persists nothing', async () => {
    const user = await newUser(gateway.app);
    const answer = await completeTurn(gateway, { token: user.token, body: { store: false, messages: [{ role: 'user', content: marker('nothing') }], max_tokens: 4 } });
    expect(answer.object).toBe('chat.completion');
    expect(answer.choices[0]!.message.content.length).toBeGreaterThan(0);
    expect(answer.conversation_id ?? null).toBeNull();
    expect(answer.message_id ?? null).toBeNull();
    expect(await conversationCount(gateway.app, user.userId)).toEqual({ conversations: 0, messages: 0 });
  });
});
