// A conversation longer than the model's context: the gateway drops the oldest history (never the
// system prompt, never the new message) so the prompt fits, says how many it dropped, and vLLM never
// answers 400. When even the new message does not fit: 400 context_length_exceeded, nothing stored.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import {
  call,
  completeTurn,
  conversationCount,
  createConversation,
  expectErrorReply,
  generationRequestsWith,
  generationRequestWith,
  getConversation,
  marker,
  newUser,
  settledMessages,
  startChatGateway,
  streamTurn,
  type ChatGateway,
  type ChatUser,
  type MessageBody,
} from '../helpers/chat-fixtures.js';

const BIG = 'big';
const SMALL = 'small';
const SMALL_CONTEXT = 300;
const SYSTEM_PROMPT = 'You answer travel questions.';

describe.each(backends)('chat API: fitting the context window (%s)', (backend) => {
  let gateway: ChatGateway;

  beforeAll(async () => {
    gateway = await startChatGateway({
      backend,
      simulatorOptions: { models: [{ id: BIG, maxModelLen: 8192 }, { id: SMALL, maxModelLen: SMALL_CONTEXT }] },
    });
  });

  afterAll(async () => {
    await gateway.close();
  });

  /** A conversation whose history (on the big model) is far longer than the small model's context. */
  async function longConversation(user: ChatUser): Promise<{ id: string; history: MessageBody[] }> {
    const conversation = await createConversation(gateway.app, user.token, { title: 'Long', system_prompt: SYSTEM_PROMPT });
    for (let turn = 0; turn < 5; turn++) {
      const content = `${marker(`turn-${turn}`)} ${'Tell me more about the old town and its tram lines. '.repeat(3)}`;
      const answer = await completeTurn(gateway, { token: user.token, body: { conversation_id: conversation.id, model: BIG, messages: [{ role: 'user', content }], max_tokens: 12, ignore_eos: true } });
      expect(answer.trimmed_messages).toBe(0);
    }
    return { id: conversation.id, history: await settledMessages(gateway.app, user.token, conversation.id) };
  }

  async function tokenCount(messages: unknown[]): Promise<number> {
    const response = await fetch(`${gateway.simulator.url}/tokenize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: SMALL, messages }) });
    return ((await response.json()) as { count: number }).count;
  }

  /** What vLLM got: the system prompt, then the newest part of the history in order, then the new message. */
  function expectTrimmedPrompt(sent: Array<{ role: string; content: unknown }>, history: MessageBody[], newMessage: string, trimmed: number): void {
    const pairs = sent.map((message) => ({ role: message.role, content: message.content }));
    expect(pairs[0]).toEqual({ role: 'system', content: SYSTEM_PROMPT });
    expect(pairs[pairs.length - 1]).toEqual({ role: 'user', content: newMessage });
    const keptHistory = pairs.slice(1, -1);
    expect(keptHistory).toEqual(history.slice(history.length - keptHistory.length).map((message) => ({ role: message.role, content: message.content })));
    expect(history.length - keptHistory.length).toBe(trimmed);
    // It dropped what it had to, not the whole history.
    expect(keptHistory.length).toBeGreaterThan(0);
  }

  it('JSON: drops the oldest turns, reports trimmed_messages, and vLLM answers', async () => {
    const user = await newUser(gateway.app);
    const { id, history } = await longConversation(user);
    expect(await tokenCount([{ role: 'system', content: SYSTEM_PROMPT }, ...history.map((message) => ({ role: message.role, content: message.content }))])).toBeGreaterThan(SMALL_CONTEXT);

    const newMessage = `${marker('fit')} And the museums?`;
    const reply = await call(gateway, { path: '/api/chat/completions', token: user.token, body: { conversation_id: id, model: SMALL, messages: [{ role: 'user', content: newMessage }], max_tokens: 20 } });
    expect(reply.status, reply.text).toBe(200);
    const answer = JSON.parse(reply.text) as { trimmed_messages: number; message_id: string; usage: { prompt_tokens: number } };
    expect(answer.trimmed_messages).toBeGreaterThan(0);

    const upstream = generationRequestWith(gateway.simulator, newMessage);
    expectTrimmedPrompt(upstream.body.messages, history, newMessage, answer.trimmed_messages);
    expect(answer.usage.prompt_tokens + 20).toBeLessThanOrEqual(SMALL_CONTEXT);
    const assistant = (await settledMessages(gateway.app, user.token, id)).find((message) => message.id === answer.message_id)!;
    expect(assistant.status).toBe('complete');
    // Trimming is for this request only: the stored history keeps every message.
    expect((await getConversation(gateway.app, user.token, id)).message_count).toBe(history.length + 2);
  });

  it('SSE: the conversation event says how many messages were dropped, and the stream completes', async () => {
    const user = await newUser(gateway.app);
    const { id, history } = await longConversation(user);
    const newMessage = `${marker('fit-sse')} Any good bakeries?`;
    const stream = await streamTurn(gateway, { token: user.token, body: { conversation_id: id, model: SMALL, messages: [{ role: 'user', content: newMessage }] } });
    expect(stream.opening!.trimmed_messages).toBeGreaterThan(0);
    expect(stream.errors).toEqual([]);
    expect(stream.done).toBe(true);
    expect(stream.content.length).toBeGreaterThan(0);

    const upstream = generationRequestWith(gateway.simulator, newMessage);
    expectTrimmedPrompt(upstream.body.messages, history, newMessage, stream.opening!.trimmed_messages);
    expect(await tokenCount(upstream.body.messages)).toBeLessThan(SMALL_CONTEXT);
    expect((await settledMessages(gateway.app, user.token, id)).find((message) => message.id === stream.opening!.assistant_message_id)!.status).toBe('complete');
  });

  it('drops whole turns: an answer is never sent without the question it answered', async () => {
    const user = await newUser(gateway.app);
    const conversation = await createConversation(gateway.app, user.token, { title: 'Just over', system_prompt: SYSTEM_PROMPT });
    // One long question, then a short one: dropping the long question alone would be enough.
    for (const content of [`${marker('long-question')} ${'Which trams go up to the castle? '.repeat(6)}`, marker('short-question')]) {
      await completeTurn(gateway, { token: user.token, body: { conversation_id: conversation.id, model: BIG, messages: [{ role: 'user', content }], max_tokens: 8, ignore_eos: true } });
    }
    const history = await settledMessages(gateway.app, user.token, conversation.id);
    const asSent = [{ role: 'system', content: SYSTEM_PROMPT }, ...history.map((message) => ({ role: message.role, content: message.content }))];
    const base = `${marker('just-over')} `;
    const baseTokens = await tokenCount([...asSent, { role: 'user', content: base }]);
    // The new message makes the prompt a few tokens longer than the context allows (3 bytes a token).
    const newMessage = `${base}${'a'.repeat(3 * (SMALL_CONTEXT - baseTokens + 4))}`;
    expect(await tokenCount([...asSent, { role: 'user', content: newMessage }])).toBeGreaterThanOrEqual(SMALL_CONTEXT);
    expect(await tokenCount([...asSent.slice(0, 1), ...asSent.slice(2), { role: 'user', content: newMessage }])).toBeLessThan(SMALL_CONTEXT - 20);

    const answer = await completeTurn(gateway, { token: user.token, body: { conversation_id: conversation.id, model: SMALL, messages: [{ role: 'user', content: newMessage }] } });
    expect(answer.trimmed_messages).toBeGreaterThan(0);
    const sent = generationRequestWith(gateway.simulator, base.trim()).body.messages;
    expectTrimmedPrompt(sent, history, newMessage, answer.trimmed_messages!);
    // Whole turns go: after the system prompt comes a question, never an answer whose question was dropped.
    expect(sent[1]!.role, `dropped ${answer.trimmed_messages}`).toBe('user');
    expect(answer.trimmed_messages! % 2).toBe(0);
  });

  it('400 context_length_exceeded when even the new message does not fit; nothing is stored, nothing reaches vLLM', async () => {
    const user = await newUser(gateway.app);
    const conversation = await createConversation(gateway.app, user.token, { title: 'Too long', system_prompt: SYSTEM_PROMPT });
    await completeTurn(gateway, { token: user.token, body: { conversation_id: conversation.id, model: SMALL, messages: [{ role: 'user', content: marker('short') }], max_tokens: 5 } });
    const before = await getConversation(gateway.app, user.token, conversation.id);
    const countsBefore = await conversationCount(gateway.app, user.userId);

    const huge = `${marker('huge')} ${'word '.repeat(400)}`;
    for (const path of ['/api/chat', '/api/chat/completions']) {
      const inConversation = await call(gateway, { path, token: user.token, body: { conversation_id: conversation.id, model: SMALL, messages: [{ role: 'user', content: huge }] } });
      expectErrorReply(inConversation, 400, 'context_length_exceeded');
      const fresh = await call(gateway, { path, token: user.token, body: { model: SMALL, messages: [{ role: 'user', content: huge }] } });
      expectErrorReply(fresh, 400, 'context_length_exceeded');
    }
    expect(generationRequestsWith(gateway.simulator, 'huge-')).toEqual([]);
    expect(await getConversation(gateway.app, user.token, conversation.id)).toEqual(before);
    expect(await conversationCount(gateway.app, user.userId)).toEqual(countsBefore);
  });
});
