// POST /api/chat/{assistant_message_id}/stop: 202 {status: "stopping"}; vLLM's request is aborted,
// the client's stream ends with [DONE], the answer so far is saved `interrupted`. Owner only (404
// otherwise), 409 for a message that is not generating, and it works from another instance.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/sim/index.js';
import { backends, hasRealServices } from '../helpers/environment.js';
import {
  allMessages,
  call,
  completeTurn,
  contentChunkCount,
  eventually,
  expectErrorReply,
  fullRunText,
  generationRequestWith,
  jsonOf,
  marker,
  messageEventually,
  newUser,
  OpenStream,
  readChatStream,
  SIM_CREATED,
  startChatGateway,
  type ChatGateway,
  type ConversationBody,
  type ListBody,
} from '../helpers/chat-fixtures.js';

const longBody = (content: string) => ({ messages: [{ role: 'user', content }], max_tokens: 200, ignore_eos: true, seed: 3 });

describe.each(backends)('chat API: stop a generation (%s)', (backend) => {
  let gateway: ChatGateway;
  let reference: Simulator;

  beforeAll(async () => {
    reference = await startSimulator({ created: SIM_CREATED });
    gateway = await startChatGateway({ backend, simulatorOptions: { interTokenMs: 50 } });
  });

  afterAll(async () => {
    await gateway.close();
    await reference.close();
  });

  function stop(token: string, messageId: string) {
    return call(gateway, { path: `/api/chat/${encodeURIComponent(messageId)}/stop`, token, body: {} });
  }

  it('202 {status: "stopping"}; vLLM’s request is aborted; the stream ends with [DONE]; the partial is saved interrupted', async () => {
    const user = await newUser(gateway.app);
    const content = marker('stop-me');
    const stream = new OpenStream({ url: gateway.url, path: '/api/chat', token: user.token, body: longBody(content) });
    const opening = await stream.opening();
    await stream.waitFor((text) => contentChunkCount(text) >= 2);
    const abortsBefore = gateway.simulator.stats().finished.abort;

    const reply = await stop(user.token, opening.assistant_message_id!);
    expect(reply.status, reply.text).toBe(202);
    expect(jsonOf(reply)).toEqual({ status: 'stopping' });

    const stats = await gateway.simulator.waitForStats((current) => current.running === 0, 2000);
    expect(stats.finished.abort).toBe(abortsBefore + 1);
    const received = readChatStream(await stream.finish(3000));
    expect(received.done).toBe(true);
    expect(received.text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(received.errors).toEqual([]);

    const assistant = await messageEventually(gateway.app, {
      token: user.token,
      conversationId: opening.conversation_id!,
      messageId: opening.assistant_message_id!,
      accept: (message) => message.status !== 'streaming',
    });
    const full = await fullRunText(reference, generationRequestWith(gateway.simulator, content));
    expect(assistant.status).toBe('interrupted');
    expect(assistant.status_reason!.length).toBeGreaterThan(0);
    expect(assistant.content.length).toBeGreaterThan(0);
    expect(assistant.content).toBe(received.content);
    expect(full.startsWith(assistant.content)).toBe(true);
    expect(assistant.content.length).toBeLessThan(full.length);
  });

  it('only the owner can stop: another user, a random uuid, a non-uuid → 404, and the generation goes on', async () => {
    const owner = await newUser(gateway.app);
    const stranger = await newUser(gateway.app);
    const stream = new OpenStream({ url: gateway.url, path: '/api/chat', token: owner.token, body: longBody(marker('keep-going')) });
    const opening = await stream.opening();
    await stream.waitFor((text) => contentChunkCount(text) >= 1);

    expectErrorReply(await stop(stranger.token, opening.assistant_message_id!), 404, 'not_found');
    expectErrorReply(await stop(owner.token, randomUUID()), 404, 'not_found');
    expectErrorReply(await stop(owner.token, 'not-a-uuid'), 404, 'not_found');
    // The user's own message is not a generation.
    const userMessage = await stop(owner.token, opening.user_message_id!);
    expect([404, 409]).toContain(userMessage.status);

    const chunksBefore = contentChunkCount(stream.text);
    await stream.waitFor((text) => contentChunkCount(text) >= chunksBefore + 3);
    expect(gateway.simulator.stats().running).toBe(1);
    const messages = await allMessages(gateway.app, owner.token, opening.conversation_id!);
    expect(messages.find((message) => message.id === opening.assistant_message_id)!.status).toBe('streaming');

    expect((await stop(owner.token, opening.assistant_message_id!)).status).toBe(202);
    expect(readChatStream(await stream.finish(3000)).done).toBe(true);
  });

  it('409 for a message that is not generating: complete, or already stopped', async () => {
    const user = await newUser(gateway.app);
    const answer = await completeTurn(gateway, { token: user.token, body: { messages: [{ role: 'user', content: marker('done') }], max_tokens: 2 } });
    expectErrorReply(await stop(user.token, answer.message_id!), 409, ['conflict', 'generation_stopped']);

    const stream = new OpenStream({ url: gateway.url, path: '/api/chat', token: user.token, body: longBody(marker('stop-twice')) });
    const opening = await stream.opening();
    await stream.waitFor((text) => contentChunkCount(text) >= 1);
    expect((await stop(user.token, opening.assistant_message_id!)).status).toBe(202);
    await stream.finish(3000);
    await messageEventually(gateway.app, {
      token: user.token,
      conversationId: opening.conversation_id!,
      messageId: opening.assistant_message_id!,
      accept: (message) => message.status !== 'streaming',
    });
    expectErrorReply(await stop(user.token, opening.assistant_message_id!), 409, ['conflict', 'generation_stopped']);
  });

  it('stopping a POST /api/chat/completions request also saves it interrupted', async () => {
    const user = await newUser(gateway.app);
    const content = marker('json-stop');
    const abortsBefore = gateway.simulator.stats().finished.abort;
    const pending = call(gateway, { path: '/api/chat/completions', token: user.token, body: longBody(content) });
    await gateway.simulator.waitForStats((stats) => stats.running === 1, 2000);

    // The JSON answer names no ids until it is over: find the generating message the way a client would.
    const list = jsonOf<ListBody<ConversationBody>>(await call(gateway, { path: '/api/conversations', token: user.token }));
    const conversationId = list.data[0]!.id;
    const generating = await eventually(
      async () => (await allMessages(gateway.app, user.token, conversationId)).find((message) => message.role === 'assistant'),
      (message) => message?.status === 'streaming',
    );
    expect(generating?.status).toBe('streaming');

    const reply = await stop(user.token, generating!.id);
    expect(reply.status, reply.text).toBe(202);
    await pending;
    const stats = await gateway.simulator.waitForStats((current) => current.running === 0, 2000);
    expect(stats.finished.abort).toBe(abortsBefore + 1);
    const assistant = await messageEventually(gateway.app, { token: user.token, conversationId, messageId: generating!.id, accept: (message) => message.status !== 'streaming' });
    expect(assistant.status).toBe('interrupted');
    expect(assistant.status_reason!.length).toBeGreaterThan(0);
  });
});

describe.skipIf(!hasRealServices)('chat API: stop from another instance (real)', () => {
  let simulator: Simulator;
  let first: ChatGateway;
  let second: ChatGateway;

  beforeAll(async () => {
    simulator = await startSimulator({ created: SIM_CREATED, interTokenMs: 50 });
    first = await startChatGateway({ backend: 'real', simulator });
    second = await startChatGateway({ backend: 'real', simulator, sharing: first.testApp });
  });

  afterAll(async () => {
    await second.close();
    await first.close();
    await simulator.close();
  });

  it('a stream on instance A stops when B is asked', async () => {
    const user = await newUser(first.app);
    const stream = new OpenStream({ url: first.url, path: '/api/chat', token: user.token, body: longBody(marker('cross-instance')) });
    const opening = await stream.opening();
    await stream.waitFor((text) => contentChunkCount(text) >= 2);
    const abortsBefore = simulator.stats().finished.abort;

    const reply = await call(second, { path: `/api/chat/${opening.assistant_message_id!}/stop`, token: user.token, body: {} });
    expect(reply.status, reply.text).toBe(202);
    expect(jsonOf(reply)).toEqual({ status: 'stopping' });

    const received = readChatStream(await stream.finish(3000));
    expect(received.done).toBe(true);
    expect(received.errors).toEqual([]);
    const stats = await simulator.waitForStats((current) => current.running === 0, 2000);
    expect(stats.finished.abort).toBe(abortsBefore + 1);
    const assistant = await messageEventually(second.app, {
      token: user.token,
      conversationId: opening.conversation_id!,
      messageId: opening.assistant_message_id!,
      accept: (message) => message.status !== 'streaming',
    });
    expect(assistant.status).toBe('interrupted');
    expect(assistant.content).toBe(received.content);
    expect(assistant.content.length).toBeGreaterThan(0);
  });
});
