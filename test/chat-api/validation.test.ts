// The chat API validates like the relay (temperature outside 0–2, no messages → 400) and limits
// message content (over 200,000 characters → 400 or 413), before anything is stored or sent to vLLM.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import {
  call,
  conversationCount,
  createConversation,
  expectErrorReply,
  generationRequestsWith,
  getConversation,
  marker,
  newUser,
  SIM_MODEL,
  startChatGateway,
  type ChatGateway,
  type ChatUser,
} from '../helpers/chat-fixtures.js';

const endpoints = ['/api/chat', '/api/chat/completions'] as const;
const CONTENT_LIMIT = 200_000;

describe.each(backends)('chat API: validation (%s)', (backend) => {
  let gateway: ChatGateway;
  let user: ChatUser;

  beforeAll(async () => {
    // A context far larger than any content here: only the content limit can refuse the long one.
    gateway = await startChatGateway({ backend, simulatorOptions: { models: [{ id: SIM_MODEL, maxModelLen: 1_000_000 }] } });
    user = await newUser(gateway.app);
  });

  afterAll(async () => {
    await gateway.close();
  });

  /** The request is refused, nothing reached vLLM and nothing was stored. */
  async function expectRefused(options: { path: string; body: Record<string, unknown>; needle: string; status?: number | number[] }): Promise<string> {
    const before = await conversationCount(gateway.app, user.userId);
    const reply = await call(gateway, { path: options.path, token: user.token, body: options.body });
    const status = options.status ?? 400;
    const { message } = expectErrorReply(reply, status, status === 400 ? ['validation_failed', 'invalid_request'] : ['validation_failed', 'invalid_request', 'payload_too_large']);
    expect(generationRequestsWith(gateway.simulator, options.needle)).toEqual([]);
    expect(await conversationCount(gateway.app, user.userId)).toEqual(before);
    return message;
  }

  it.each(endpoints)('%s: temperature 3 → 400 naming the 0–2 range', async (path) => {
    const needle = marker('hot');
    const message = await expectRefused({ path, needle, body: { temperature: 3, messages: [{ role: 'user', content: needle }] } });
    expect(message).toMatch(/temperature/);
    expect(message).toMatch(/\b0\b[^0-9]+\b2\b/);
  });

  it.each(endpoints)('%s: no messages, or an empty list → 400', async (path) => {
    const needle = marker('empty');
    await expectRefused({ path, needle, body: { messages: [], metadata: needle } });
    await expectRefused({ path, needle, body: { model: needle } });
    await expectRefused({ path, needle, body: { messages: [{ role: 'wizard', content: needle }] } });
  });

  it.each(endpoints)('%s: a content over 200,000 characters → 400 or 413', async (path) => {
    const needle = marker('long');
    const tooLong = `${needle}${'x'.repeat(CONTENT_LIMIT)}`;
    await expectRefused({ path, needle, status: [400, 413], body: { messages: [{ role: 'user', content: tooLong }] } });
    // Exactly at the limit is fine.
    const atLimit = await call(gateway, { path, token: user.token, body: { store: false, max_tokens: 2, messages: [{ role: 'user', content: 'y'.repeat(CONTENT_LIMIT) }] } });
    expect(atLimit.status, atLimit.text.slice(0, 300)).toBe(200);
  });

  it.each(endpoints)('%s: the same text as a content part is no way around the limit', async (path) => {
    const needle = marker('long-part');
    const tooLong = `${needle}${'x'.repeat(CONTENT_LIMIT)}`;
    await expectRefused({ path, needle, status: [400, 413], body: { messages: [{ role: 'user', content: [{ type: 'text', text: tooLong }] }] } });
  });

  it('an invalid request to an existing conversation leaves it untouched', async () => {
    const conversation = await createConversation(gateway.app, user.token, { title: 'Untouched' });
    const before = await getConversation(gateway.app, user.token, conversation.id);
    const needle = marker('untouched');
    for (const path of endpoints) {
      await expectRefused({ path, needle, body: { conversation_id: conversation.id, temperature: -1, messages: [{ role: 'user', content: needle }] } });
      await expectRefused({ path, needle, body: { conversation_id: conversation.id, store: 'yes', messages: [{ role: 'user', content: needle }] } });
    }
    expect(await getConversation(gateway.app, user.token, conversation.id)).toEqual(before);
  });

  it.each(endpoints)('%s: 401 without a credential', async (path) => {
    const needle = marker('anonymous');
    const reply = await call(gateway, { path, body: { messages: [{ role: 'user', content: needle }] } });
    expectErrorReply(reply, 401, 'unauthorized');
    expect(generationRequestsWith(gateway.simulator, needle)).toEqual([]);
  });
});
