// POST /api/chat: the stream (a conversation event, vLLM's chunks, [DONE]), a new conversation
// titled from the first user message, history assembled in order, the turn written before vLLM
// answers and completed after with text, finish reason, model, usage and timings; store: false.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { uuidPattern } from '../helpers/auth-client.js';
import {
  allMessages,
  contentChunkCount,
  conversationCount,
  createConversation,
  GENERATION_PATH,
  generationRequestWith,
  getConversation,
  marker,
  messageById,
  newUser,
  OpenStream,
  readChatStream,
  settledMessages,
  SIM_MODEL,
  startChatGateway,
  streamTurn,
  type ChatGateway,
} from '../helpers/chat-fixtures.js';

describe.each(backends)('chat API: POST /api/chat streams and stores the turn (%s)', (backend) => {
  let gateway: ChatGateway;

  beforeAll(async () => {
    gateway = await startChatGateway({ backend });
  });

  afterAll(async () => {
    await gateway.close();
  });

  it('opens with event: conversation, then relays vLLM’s chunks, then data: [DONE]', async () => {
    const user = await newUser(gateway.app);
    const content = marker('hello');
    const stream = await streamTurn(gateway, { token: user.token, body: { messages: [{ role: 'user', content }], max_tokens: 5, ignore_eos: true } });

    const first = stream.events[0]!;
    expect(first.event).toBe('conversation');
    const opening = JSON.parse(first.data) as Record<string, unknown>;
    expect(Object.keys(opening).sort()).toEqual(['assistant_message_id', 'conversation_id', 'trimmed_messages', 'user_message_id']);
    expect(opening.conversation_id).toMatch(uuidPattern);
    expect(opening.user_message_id).toMatch(uuidPattern);
    expect(opening.assistant_message_id).toMatch(uuidPattern);
    expect(opening.trimmed_messages).toBe(0);

    // Everything after the opening is vLLM's: unnamed data events, chunks of one completion.
    expect(stream.events.slice(1).every((event) => event.event === null)).toBe(true);
    expect(stream.chunks.length).toBeGreaterThanOrEqual(6);
    for (const chunk of stream.chunks) expect(chunk).toMatchObject({ object: 'chat.completion.chunk', model: SIM_MODEL });
    expect(new Set(stream.chunks.map((chunk) => chunk.id)).size).toBe(1);
    expect(stream.errors).toEqual([]);
    expect(stream.done).toBe(true);
    expect(stream.text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(stream.content.length).toBeGreaterThan(0);

    // Byte for byte what vLLM sent for the request it got, less the usage chunk the gateway asked
    // for on its own account (this client did not ask for usage).
    const upstream = generationRequestWith(gateway.simulator, content);
    const direct = await fetch(`${gateway.simulator.url}${GENERATION_PATH}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': String(upstream.headers['x-request-id']) },
      body: upstream.rawBody,
    });
    const expected = (await direct.text())
      .split('\n\n')
      .filter((frame) => frame !== '' && !frame.includes('"choices":[]'))
      .map((frame) => `${frame}\n\n`)
      .join('');
    expect(stream.text.slice(stream.text.indexOf('\n\n') + 2)).toBe(expected);
  });

  it('without conversation_id creates a conversation titled from the first user message', async () => {
    const user = await newUser(gateway.app);
    const question = `What should I pack for Lisbon? ${marker('q')}`;
    const stream = await streamTurn(gateway, {
      token: user.token,
      body: { messages: [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content: question }], max_tokens: 4 },
    });
    const opening = stream.opening!;
    const conversation = await getConversation(gateway.app, user.token, opening.conversation_id!);
    expect(conversation.title).toBe(question);
    expect(conversation.message_count).toBe(3);

    const long = `${'A very long first question about many things '.repeat(12)}${marker('long')}`;
    const longStream = await streamTurn(gateway, { token: user.token, body: { messages: [{ role: 'user', content: long }], max_tokens: 4 } });
    const longTitle = (await getConversation(gateway.app, user.token, longStream.opening!.conversation_id!)).title;
    expect(longTitle.length).toBeGreaterThan(10);
    expect(longTitle.length).toBeLessThanOrEqual(200);
    expect(long.startsWith(longTitle.slice(0, 30))).toBe(true);
  });

  it('completes the assistant message with the streamed text, finish reason, model, vLLM’s usage and timings', async () => {
    const user = await newUser(gateway.app);
    const content = marker('complete-me');
    const stream = await streamTurn(gateway, {
      token: user.token,
      body: { messages: [{ role: 'user', content }], max_tokens: 7, ignore_eos: true, stream_options: { include_usage: true } },
    });
    const opening = stream.opening!;
    expect(stream.usage).not.toBeNull();

    const messages = await settledMessages(gateway.app, user.token, opening.conversation_id!);
    expect(messages.map((message) => message.id)).toEqual([opening.user_message_id, opening.assistant_message_id]);
    expect(messages[0]).toMatchObject({ role: 'user', content, status: 'complete' });
    const assistant = messages[1]!;
    expect(assistant).toMatchObject({
      role: 'assistant',
      status: 'complete',
      status_reason: null,
      content: stream.content,
      finish_reason: stream.finishReason,
      model: SIM_MODEL,
      prompt_tokens: stream.usage!.prompt_tokens,
      completion_tokens: stream.usage!.completion_tokens,
    });
    expect(assistant.finish_reason).toBe('length');
    expect(assistant.completion_tokens).toBe(7);
    expect(Number.isInteger(assistant.ttft_ms)).toBe(true);
    expect(assistant.ttft_ms).toBeGreaterThanOrEqual(0);
    expect(Number.isInteger(assistant.duration_ms)).toBe(true);
    expect(assistant.duration_ms).toBeGreaterThanOrEqual(assistant.ttft_ms!);
  });

  it('stores vLLM’s token counts even when the client did not ask for the usage chunk', async () => {
    const user = await newUser(gateway.app);
    const content = marker('count-me');
    const stream = await streamTurn(gateway, { token: user.token, body: { messages: [{ role: 'user', content }], max_tokens: 6, ignore_eos: true } });
    const upstream = generationRequestWith(gateway.simulator, content);
    // The simulator's /tokenize counts exactly what its usage reports for the same messages.
    const tokenize = await fetch(`${gateway.simulator.url}/tokenize`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: SIM_MODEL, messages: upstream.body.messages }),
    });
    const { count } = (await tokenize.json()) as { count: number };
    const assistant = (await settledMessages(gateway.app, user.token, stream.opening!.conversation_id!)).find((message) => message.id === stream.opening!.assistant_message_id)!;
    expect(assistant).toMatchObject({ status: 'complete', content: stream.content, prompt_tokens: count, completion_tokens: 6 });
  });

  it('with conversation_id, sends system prompt + stored history + the new message, in that order, and appends the turn', async () => {
    const user = await newUser(gateway.app);
    const conversation = await createConversation(gateway.app, user.token, { title: 'History', system_prompt: 'You are a travel agent.' });
    const sent = [marker('first'), marker('second'), marker('third')];
    for (const content of sent) {
      const stream = await streamTurn(gateway, { token: user.token, body: { conversation_id: conversation.id, messages: [{ role: 'user', content }], max_tokens: 4 } });
      expect(stream.opening!.conversation_id).toBe(conversation.id);
      expect(stream.done).toBe(true);
    }

    const stored = await settledMessages(gateway.app, user.token, conversation.id);
    expect(stored).toHaveLength(6);
    const upstream = generationRequestWith(gateway.simulator, sent[2]!);
    expect(upstream.body.messages.map((message) => ({ role: message.role, content: message.content }))).toEqual([
      { role: 'system', content: 'You are a travel agent.' },
      ...stored.slice(0, 4).map((message) => ({ role: message.role, content: message.content })),
      { role: 'user', content: sent[2] },
    ]);
    // The gateway's own fields are not vLLM's.
    expect(upstream.body).not.toHaveProperty('conversation_id');
    expect(upstream.body).not.toHaveProperty('store');
    expect((await getConversation(gateway.app, user.token, conversation.id)).message_count).toBe(6);
  });

  it('store: false streams the answer and persists nothing', async () => {
    const user = await newUser(gateway.app);
    const stream = await streamTurn(gateway, { token: user.token, body: { store: false, messages: [{ role: 'user', content: marker('ephemeral') }], max_tokens: 4 } });
    expect(stream.done).toBe(true);
    expect(stream.content.length).toBeGreaterThan(0);
    expect(await conversationCount(gateway.app, user.userId)).toEqual({ conversations: 0, messages: 0 });

    // With a conversation: its history is used, nothing is appended.
    const conversation = await createConversation(gateway.app, user.token, { title: 'Keep as is' });
    const kept = marker('kept');
    await streamTurn(gateway, { token: user.token, body: { conversation_id: conversation.id, messages: [{ role: 'user', content: kept }], max_tokens: 4 } });
    const before = await getConversation(gateway.app, user.token, conversation.id);
    const ephemeral = marker('not-kept');
    const unstored = await streamTurn(gateway, { token: user.token, body: { conversation_id: conversation.id, store: false, messages: [{ role: 'user', content: ephemeral }], max_tokens: 4 } });
    expect(unstored.done).toBe(true);
    const upstream = generationRequestWith(gateway.simulator, ephemeral);
    expect(upstream.body.messages.map((message) => message.content)).toContain(kept);
    expect(await getConversation(gateway.app, user.token, conversation.id)).toEqual(before);
    expect((await allMessages(gateway.app, user.token, conversation.id)).map((message) => message.content)).not.toContain(ephemeral);
  });

  it('writes the user message and a streaming assistant message before vLLM answers, and completes it at the end', async () => {
    const user = await newUser(gateway.app);
    gateway.simulator.update({ timeToFirstTokenMs: 600, interTokenMs: 100 });
    try {
      const content = marker('slow');
      const stream = new OpenStream({ url: gateway.url, path: '/api/chat', token: user.token, body: { messages: [{ role: 'user', content }], max_tokens: 8, ignore_eos: true } });
      const opening = await stream.opening();
      // vLLM has the request and has not answered yet: the turn is already stored.
      await gateway.simulator.waitForStats((stats) => stats.running >= 1, 2000);
      expect(contentChunkCount(stream.text)).toBe(0);
      const beforeFirstToken = await allMessages(gateway.app, user.token, opening.conversation_id!);
      expect(beforeFirstToken.map((message) => [message.id, message.role, message.status])).toEqual([
        [opening.user_message_id, 'user', 'complete'],
        [opening.assistant_message_id, 'assistant', 'streaming'],
      ]);
      expect(beforeFirstToken[0]!.content).toBe(content);

      await stream.waitFor((text) => contentChunkCount(text) >= 2);
      const midStream = await messageById(gateway.app, user.token, opening.conversation_id!, opening.assistant_message_id!);
      expect(midStream.status).toBe('streaming');

      const finished = readChatStream(await stream.finish());
      expect(finished.done).toBe(true);
      const assistant = (await settledMessages(gateway.app, user.token, opening.conversation_id!)).find((message) => message.id === opening.assistant_message_id)!;
      expect(assistant).toMatchObject({ status: 'complete', content: finished.content, completion_tokens: 8, finish_reason: 'length' });
      expect(assistant.ttft_ms).toBeGreaterThanOrEqual(500);
      expect(assistant.duration_ms).toBeGreaterThanOrEqual(assistant.ttft_ms! + 500);
    } finally {
      gateway.simulator.update({ timeToFirstTokenMs: 0, interTokenMs: 0 });
    }
  });
});
