// The start of a turn is one statement written while vLLM starts: every message of the turn lands
// in order with the ids the stream announced; a turn that cannot be written is never answered —
// no byte of the stream, vLLM's request cut, nothing half stored — and the caller's limits are whole.
import { sql } from 'kysely';
import { createConversationsRepository } from '../../src/conversations/repository.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import {
  allMessages,
  call,
  conversationCount,
  createConversation,
  expectErrorReply,
  generationRequestsWith,
  getConversation,
  marker,
  newUser,
  eventually,
  OpenStream,
  sleep,
  startChatGateway,
  streamTurn,
  type ChatGateway,
} from '../helpers/chat-fixtures.js';
import { metricsText, metricSum } from '../helpers/relay-fixtures.js';

/** Content that the trigger below refuses to store, standing in for any failed write. */
const unstorable = 'refuse-to-store-this-turn';
/** Content whose write the trigger below slows down, standing in for a busy database. */
const slowToStore = 'slow-to-store-this-turn';

describe.each(backends)('chat API: the start of a turn (%s)', (backend) => {
  let gateway: ChatGateway;

  beforeAll(async () => {
    gateway = await startChatGateway({ backend, simulatorOptions: { timeToFirstTokenMs: 150 } });
    // A trigger in this test's own schema makes one marked message fail to insert, as a full disk would.
    const db = gateway.app.gateway.database.db;
    await sql
      .raw(
        `CREATE FUNCTION refuse_marked_message() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.content LIKE '%${unstorable}%' THEN RAISE EXCEPTION 'refused by the test'; END IF;
           IF NEW.content LIKE '%${slowToStore}%' THEN PERFORM pg_sleep(0.4); END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_marked_message BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_marked_message();`,
      )
      .execute(db);
  });

  afterAll(async () => {
    await gateway.close();
  });

  it('stores every message of a turn in order, with the ids the opening event announced', async () => {
    const user = await newUser(gateway.app);
    const question = marker('question');
    const messages = [
      { role: 'system', content: marker('system') },
      { role: 'user', content: marker('earlier') },
      { role: 'assistant', content: marker('answer') },
      { role: 'user', content: question },
    ];
    const stream = await streamTurn(gateway, { token: user.token, body: { messages, max_tokens: 3 } });
    expect(stream.done).toBe(true);
    const opening = stream.opening!;

    const stored = await allMessages(gateway.app, user.token, opening.conversation_id!);
    expect(stored.map((message) => [message.role, message.content])).toEqual([...messages.map((message) => [message.role, message.content]), ['assistant', stream.content]]);
    expect(stored.at(-1)!.id).toBe(opening.assistant_message_id);
    expect(stored.at(-2)!.id).toBe(opening.user_message_id);
    expect(stored.at(-1)!.status).toBe('complete');
    const conversation = await getConversation(gateway.app, user.token, opening.conversation_id!);
    expect(conversation.message_count).toBe(5);
  });

  it('keeps the order of a long turn (12 messages: past the single digits)', async () => {
    const user = await newUser(gateway.app);
    const messages = Array.from({ length: 12 }, (_, index) => ({ role: index % 2 === 0 ? 'user' : 'assistant', content: marker(`m${index}`) }));
    messages[11] = { role: 'user', content: marker('last') };
    const stream = await streamTurn(gateway, { token: user.token, body: { messages, max_tokens: 2 } });
    expect(stream.done).toBe(true);
    const stored = await allMessages(gateway.app, user.token, stream.opening!.conversation_id!);
    expect(stored.map((message) => message.content)).toEqual([...messages.map((message) => message.content), stream.content]);
    expect(stored.at(-1)!.id).toBe(stream.opening!.assistant_message_id);
  });

  it('appends to an existing conversation after what it holds, and counts the new messages', async () => {
    const user = await newUser(gateway.app);
    const conversation = await createConversation(gateway.app, user.token, { title: 'appending' });
    const first = await streamTurn(gateway, { token: user.token, body: { conversation_id: conversation.id, messages: [{ role: 'user', content: marker('one') }], max_tokens: 2 } });
    const second = await streamTurn(gateway, { token: user.token, body: { conversation_id: conversation.id, messages: [{ role: 'user', content: marker('two') }], max_tokens: 2 } });
    expect(first.opening!.conversation_id).toBe(conversation.id);
    expect(second.opening!.conversation_id).toBe(conversation.id);

    const stored = await allMessages(gateway.app, user.token, conversation.id);
    expect(stored.map((message) => message.id)).toEqual([first.opening!.user_message_id, first.opening!.assistant_message_id, second.opening!.user_message_id, second.opening!.assistant_message_id]);
    expect((await getConversation(gateway.app, user.token, conversation.id)).message_count).toBe(4);
  });

  it('a turn that cannot be written gets an error and no stream; vLLM’s request is cut and nothing is stored', async () => {
    const user = await newUser(gateway.app);
    const content = `${marker('unstorable')} ${unstorable}`;
    const abortsBefore = gateway.simulator.stats().finished.abort;
    const notStoredBefore = metricSum(await metricsText(gateway.url), 'chat_aborted_streams_total', { reason: 'not_stored' });
    const reply = await call(gateway, { path: '/api/chat', token: user.token, body: { messages: [{ role: 'user', content }], max_tokens: 20 } });

    expectErrorReply(reply, 500, 'internal_error');
    // Counted as a generation cut for want of storage, not as a client leaving.
    expect(metricSum(await metricsText(gateway.url), 'chat_aborted_streams_total', { reason: 'not_stored' })).toBe(notStoredBefore + 1);
    expect(reply.text).not.toContain('event: conversation');
    // vLLM was asked (the write and vLLM's start overlap) and then cut before its first token.
    expect(generationRequestsWith(gateway.simulator, content)).toHaveLength(1);
    await gateway.simulator.waitForStats((stats) => stats.finished.abort > abortsBefore && stats.running === 0, 3000);
    expect(await conversationCount(gateway.app, user.userId)).toEqual({ conversations: 0, messages: 0 });

    // The admission was settled: the same user is served at once, in a conversation of its own.
    const next = await streamTurn(gateway, { token: user.token, body: { messages: [{ role: 'user', content: marker('after') }], max_tokens: 2 } });
    expect(next.done).toBe(true);
    expect(await conversationCount(gateway.app, user.userId)).toEqual({ conversations: 1, messages: 2 });
  });

  it('the same failure on a JSON turn in an existing conversation leaves the conversation as it was', async () => {
    const user = await newUser(gateway.app);
    const conversation = await createConversation(gateway.app, user.token, { title: 'untouched' });
    const content = `${marker('unstorable-json')} ${unstorable}`;
    const reply = await call(gateway, { path: '/api/chat/completions', token: user.token, body: { conversation_id: conversation.id, messages: [{ role: 'user', content }], max_tokens: 5 } });

    expectErrorReply(reply, 500, 'internal_error');
    await sleep(50);
    expect(await allMessages(gateway.app, user.token, conversation.id)).toEqual([]);
    expect((await getConversation(gateway.app, user.token, conversation.id)).message_count).toBe(0);
  });

  // PGlite runs inside the gateway's process and cannot be slow without stopping it, so a write
  // that is still running while the client leaves exists only with a PostgreSQL server.
  if (backend === 'real') it('a client that leaves while its turn is still being written: the turn is kept as interrupted, vLLM cut', async () => {
    const user = await newUser(gateway.app);
    const content = `${marker('slow')} ${slowToStore}`;
    const abortsBefore = gateway.simulator.stats().finished.abort;
    const stream = new OpenStream({ url: gateway.url, path: '/api/chat', token: user.token, body: { messages: [{ role: 'user', content }], max_tokens: 20 } });
    // vLLM has answered its headers by now; the gateway is waiting for the write, the body unread.
    await eventually(async () => generationRequestsWith(gateway.simulator, content).length, (count) => count === 1);
    await sleep(100);
    stream.destroy();
    await stream.finish();
    expect(stream.text).toBe('');

    await gateway.simulator.waitForStats((stats) => stats.finished.abort > abortsBefore && stats.running === 0, 3000);
    const stored = await eventually(
      () => conversationMessages(gateway, user.userId),
      (messages) => messages.length === 2 && messages[1]!.status !== 'streaming',
    );
    expect(stored.map((message) => [message.role, message.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
    ]);
    // Still serving.
    const next = await streamTurn(gateway, { token: user.token, body: { messages: [{ role: 'user', content: marker('after') }], max_tokens: 2 } });
    expect(next.done).toBe(true);
  });

  if (backend === 'real') it('a client that leaves before vLLM answers, while its turn is still being written: the turn ends interrupted, not streaming', async () => {
    const user = await newUser(gateway.app);
    const content = `${marker('early-leave')} ${slowToStore}`;
    // vLLM takes a second for its headers; the write takes 0.4 s; the client leaves at 0.1 s.
    gateway.simulator.setFault({ delay_ms: 1000 });
    try {
      const stream = new OpenStream({ url: gateway.url, path: '/api/chat', token: user.token, body: { messages: [{ role: 'user', content }], max_tokens: 5 } });
      await sleep(100);
      stream.destroy();
      await stream.finish();
      await eventually(
        () => conversationMessages(gateway, user.userId),
        (messages) => messages.length === 2,
      );
      // Whatever ran first, the write or the ending, the assistant message must not stay `streaming`.
      await sleep(600);
      expect((await conversationMessages(gateway, user.userId)).map((message) => [message.role, message.status])).toEqual([
        ['user', 'complete'],
        ['assistant', 'interrupted'],
      ]);
    } finally {
      gateway.simulator.setFault(null);
    }
  });

  it('text with a NUL character, which PostgreSQL cannot store, is a 400 and no stream — also in a title', async () => {
    const user = await newUser(gateway.app);
    const metricsBefore = await metricsText(gateway.url);
    for (const path of ['/api/chat', '/api/chat/completions']) {
      const reply = await call(gateway, { path, token: user.token, body: { messages: [{ role: 'user', content: `${marker('nul')}\u0000after` }], max_tokens: 2 } });
      expect(expectErrorReply(reply, 400, 'validation_failed').message).toContain('U+0000');
      expect(reply.text).not.toContain('event: conversation');
    }
    // The caller's mistake, not a cut generation.
    const metricsAfter = await metricsText(gateway.url);
    expect(metricSum(metricsAfter, 'chat_requests_total', { status: 'client_error' })).toBe(metricSum(metricsBefore, 'chat_requests_total', { status: 'client_error' }) + 2);
    expect(metricSum(metricsAfter, 'chat_aborted_streams_total')).toBe(metricSum(metricsBefore, 'chat_aborted_streams_total'));
    const titled = await call(gateway, { path: '/api/conversations', token: user.token, body: { title: 'before\u0000after' } });
    expectErrorReply(titled, 400, 'validation_failed');
    expect(await conversationCount(gateway.app, user.userId)).toEqual({ conversations: 0, messages: 0 });
  });

  it('an answer with U+0000 from vLLM is stored without it, instead of not at all', async () => {
    const user = await newUser(gateway.app);
    const stream = await streamTurn(gateway, { token: user.token, body: { messages: [{ role: 'user', content: marker('nul-answer') }], max_tokens: 2 } });
    const messageId = stream.opening!.assistant_message_id!;
    const repository = createConversationsRepository(gateway.app.gateway.database.db);
    await repository.finishAssistant(messageId, {
      content: 'before\u0000after',
      status: 'complete',
      statusReason: null,
      finishReason: 'st\u0000op',
      model: 'sim\u0000model',
      promptTokens: 1,
      completionTokens: 2,
      ttftMs: 1,
      durationMs: 2,
      requestId: 'nul-answer',
    });
    const stored = (await allMessages(gateway.app, user.token, stream.opening!.conversation_id!)).at(-1)!;
    expect([stored.content, stored.finish_reason, stored.model, stored.status]).toEqual(['beforeafter', 'stop', 'simmodel', 'complete']);
  });
});

/** A user's stored messages in order, read from the database (the client never learned the ids). */
function conversationMessages(gateway: ChatGateway, userId: string) {
  return gateway.app.gateway.database.db
    .selectFrom('messages')
    .innerJoin('conversations', 'conversations.id', 'messages.conversation_id')
    .select(['messages.role', 'messages.status'])
    .where('conversations.user_id', '=', userId)
    .orderBy('messages.position')
    .execute();
}
