// Nothing is lost when a turn ends early: a client that hangs up leaves an `interrupted` answer with
// the text so far; vLLM failing mid-stream (an error event, or a cut connection) leaves an `error`
// answer with the text so far; each partial text is a prefix of what the full run produces.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/sim/index.js';
import { backends } from '../helpers/environment.js';
import {
  call,
  contentChunkCount,
  fullRunText,
  generationRequestWith,
  getConversation,
  marker,
  messageEventually,
  newUser,
  OpenStream,
  partialContent,
  SIM_CREATED,
  SIM_MODEL,
  startChatGateway,
  streamTurn,
  allMessages,
  type ChatGateway,
  type ChatUser,
} from '../helpers/chat-fixtures.js';

describe.each(backends)('chat API: partial answers are saved (%s)', (backend) => {
  let gateway: ChatGateway;
  /** The same simulator without delays: what a full run of a request produces. */
  let reference: Simulator;
  let user: ChatUser;

  beforeAll(async () => {
    reference = await startSimulator({ created: SIM_CREATED });
    gateway = await startChatGateway({ backend, simulatorOptions: { interTokenMs: 40 } });
    user = await newUser(gateway.app);
  });

  afterAll(async () => {
    await gateway.close();
    await reference.close();
  });

  const longBody = (content: string, extra: Record<string, unknown> = {}) => ({ messages: [{ role: 'user', content }], max_tokens: 200, ignore_eos: true, seed: 11, ...extra });

  it('client disconnect mid-stream → interrupted, with a non-empty prefix of the full answer', async () => {
    const content = marker('hang-up');
    const abortsBefore = gateway.simulator.stats().finished.abort;
    const stream = new OpenStream({ url: gateway.url, path: '/api/chat', token: user.token, body: longBody(content) });
    const opening = await stream.opening();
    const seen = partialContent(await stream.waitFor((text) => contentChunkCount(text) >= 3));
    stream.destroy();

    const stats = await gateway.simulator.waitForStats((current) => current.running === 0, 2000);
    expect(stats.finished.abort).toBe(abortsBefore + 1);
    const assistant = await messageEventually(gateway.app, {
      token: user.token,
      conversationId: opening.conversation_id!,
      messageId: opening.assistant_message_id!,
      accept: (message) => message.status !== 'streaming',
    });
    const full = await fullRunText(reference, generationRequestWith(gateway.simulator, content));
    expect(assistant.status).toBe('interrupted');
    expect(assistant.status_reason).toEqual(expect.any(String));
    expect(assistant.status_reason!.length).toBeGreaterThan(0);
    expect(assistant.content.length).toBeGreaterThan(0);
    expect(assistant.content.startsWith(seen)).toBe(true);
    expect(full.startsWith(assistant.content)).toBe(true);
    expect(assistant.content.length).toBeLessThan(full.length);
    expect(assistant.duration_ms).toEqual(expect.any(Number));
    // The user's message is kept too.
    const messages = await allMessages(gateway.app, user.token, opening.conversation_id!);
    expect(messages.map((message) => [message.role, message.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
    ]);
  });

  it('vLLM reports an error mid-stream → error, with the text so far; the client gets the error then [DONE]', async () => {
    const content = marker('upstream-error');
    const stream = await streamTurn(gateway, { token: user.token, body: longBody(content, { max_tokens: 30, sim_fault: { error_after_chunks: 4 } }) });
    expect(stream.errors).toHaveLength(1);
    expect(stream.done).toBe(true);
    expect(stream.content.length).toBeGreaterThan(0);

    const opening = stream.opening!;
    const assistant = await messageEventually(gateway.app, {
      token: user.token,
      conversationId: opening.conversation_id!,
      messageId: opening.assistant_message_id!,
      accept: (message) => message.status !== 'streaming',
    });
    const full = await fullRunText(reference, generationRequestWith(gateway.simulator, content));
    expect(assistant.status).toBe('error');
    expect(assistant.status_reason!.length).toBeGreaterThan(0);
    expect(assistant.content).toBe(stream.content);
    expect(full.startsWith(assistant.content)).toBe(true);
    expect(assistant.content.length).toBeLessThan(full.length);
  });

  it('vLLM’s stream is cut → error, with the text so far; the client gets an error event then [DONE]', async () => {
    const content = marker('cut');
    const stream = await streamTurn(gateway, { token: user.token, body: longBody(content, { max_tokens: 30, sim_fault: { cut_after_chunks: 5 } }) });
    expect(stream.errors).toHaveLength(1);
    expect(stream.done).toBe(true);
    expect(stream.content.length).toBeGreaterThan(0);

    const opening = stream.opening!;
    const assistant = await messageEventually(gateway.app, {
      token: user.token,
      conversationId: opening.conversation_id!,
      messageId: opening.assistant_message_id!,
      accept: (message) => message.status !== 'streaming',
    });
    const full = await fullRunText(reference, generationRequestWith(gateway.simulator, content));
    expect(assistant.status).toBe('error');
    expect(assistant.status_reason!.length).toBeGreaterThan(0);
    expect(assistant.content).toBe(stream.content);
    expect(full.startsWith(assistant.content)).toBe(true);
    expect(assistant.content.length).toBeLessThan(full.length);
  });

  it('vLLM refuses the request → the user message is kept and the assistant message says error', async () => {
    const content = marker('refused');
    const reply = await call(gateway, { path: '/api/chat', token: user.token, body: longBody(content, { max_tokens: 5, sim_fault: { status: 503 } }) });
    expect(reply.status).toBeGreaterThanOrEqual(500);
    const conversations = await gateway.app.gateway.database.db
      .selectFrom('messages')
      .innerJoin('conversations', 'conversations.id', 'messages.conversation_id')
      .select('conversations.id')
      .where('messages.content', '=', content)
      .where('conversations.user_id', '=', user.userId)
      .execute();
    expect(conversations).toHaveLength(1);
    const conversationId = conversations[0]!.id;
    const messages = await allMessages(gateway.app, user.token, conversationId);
    expect(messages.map((message) => [message.role, message.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'error'],
    ]);
    expect(messages[1]!.status_reason!.length).toBeGreaterThan(0);
    expect((await getConversation(gateway.app, user.token, conversationId)).message_count).toBe(2);
    expect(messages[1]!.model).toBe(SIM_MODEL);
  });
});
