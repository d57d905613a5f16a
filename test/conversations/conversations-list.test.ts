// GET /api/conversations: the caller's own, newest activity first, cursor pagination (limit 1–100,
// every conversation exactly once), and a case-insensitive title search `q`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../helpers/environment.js';
import { bearer, expectError } from '../helpers/auth-client.js';
import {
  completeTurn,
  createConversation,
  marker,
  newUser,
  startChatGateway,
  type ChatGateway,
  type ConversationBody,
  type ListBody,
} from '../helpers/chat-fixtures.js';

describe.each(backends)('conversations: list, page, search (%s)', (backend) => {
  let gateway: ChatGateway;

  beforeAll(async () => {
    gateway = await startChatGateway({ backend });
  });

  afterAll(async () => {
    await gateway.close();
  });

  async function list(token: string, query = ''): Promise<ListBody<ConversationBody>> {
    const response = await gateway.app.inject({ method: 'GET', url: `/api/conversations${query}`, headers: bearer(token) });
    expect(response.statusCode, response.body).toBe(200);
    const body = response.json<ListBody<ConversationBody>>();
    expect(Object.keys(body).sort()).toEqual(['data', 'next_cursor']);
    return body;
  }

  /** Every page of `limit`, following next_cursor. */
  async function allPages(token: string, limit: number, extra = ''): Promise<Array<ListBody<ConversationBody>>> {
    const pages: Array<ListBody<ConversationBody>> = [];
    let cursor: string | null = null;
    do {
      const page = await list(token, `?limit=${limit}${extra}${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`);
      pages.push(page);
      cursor = page.next_cursor;
    } while (cursor !== null && pages.length < 20);
    return pages;
  }

  it('lists only the caller’s conversations, newest activity first', async () => {
    const owner = await newUser(gateway.app);
    const stranger = await newUser(gateway.app);
    const first = await createConversation(gateway.app, owner.token, { title: 'first' });
    const second = await createConversation(gateway.app, owner.token, { title: 'second' });
    const third = await createConversation(gateway.app, owner.token, { title: 'third' });
    const strangers = await createConversation(gateway.app, stranger.token, { title: 'not yours' });

    const before = await list(owner.token);
    expect(before.data.map((conversation) => conversation.id)).toEqual([third.id, second.id, first.id]);
    expect(before.next_cursor).toBeNull();
    expect(JSON.stringify(before)).not.toContain(strangers.id);

    // A new turn in the oldest conversation makes it the newest activity.
    await completeTurn(gateway, { token: owner.token, body: { conversation_id: first.id, messages: [{ role: 'user', content: marker('bump') }], max_tokens: 3 } });
    const after = await list(owner.token);
    expect(after.data.map((conversation) => conversation.id)).toEqual([first.id, third.id, second.id]);
    expect(after.data[0]).toMatchObject({ id: first.id, message_count: 2 });

    expect((await list(stranger.token)).data.map((conversation) => conversation.id)).toEqual([strangers.id]);
  });

  it('pages with a cursor: every conversation once, in order, no page larger than the limit', async () => {
    const owner = await newUser(gateway.app);
    const created: ConversationBody[] = [];
    for (let index = 0; index < 5; index++) created.push(await createConversation(gateway.app, owner.token, { title: `page ${index}` }));
    const newestFirst = created.map((conversation) => conversation.id).reverse();

    const pages = await allPages(owner.token, 2);
    expect(pages.map((page) => page.data.length)).toEqual([2, 2, 1]);
    expect(pages.flatMap((page) => page.data.map((conversation) => conversation.id))).toEqual(newestFirst);
    expect(pages[pages.length - 1]!.next_cursor).toBeNull();
    for (const page of pages.slice(0, -1)) expect(typeof page.next_cursor).toBe('string');

    // A page exactly as large as what is left has no next page.
    const exact = await list(owner.token, '?limit=5');
    expect(exact.data.map((conversation) => conversation.id)).toEqual(newestFirst);
    expect(exact.next_cursor).toBeNull();
  });

  it('accepts a limit from 1 to 100 and refuses anything else with 400', async () => {
    const owner = await newUser(gateway.app);
    await createConversation(gateway.app, owner.token, { title: 'one' });
    await createConversation(gateway.app, owner.token, { title: 'two' });
    expect((await list(owner.token, '?limit=1')).data).toHaveLength(1);
    expect((await list(owner.token, '?limit=100')).data).toHaveLength(2);
    for (const limit of ['0', '101', '1000', '-1', 'ten']) {
      const response = await gateway.app.inject({ method: 'GET', url: `/api/conversations?limit=${limit}`, headers: bearer(owner.token) });
      expectError(response, 400, 'validation_failed');
    }
  });

  it('refuses a cursor it did not give out with 400', async () => {
    const owner = await newUser(gateway.app);
    for (const cursor of ['garbage', Buffer.from('{"at":"yesterday"}').toString('base64url')]) {
      const response = await gateway.app.inject({ method: 'GET', url: `/api/conversations?cursor=${cursor}`, headers: bearer(owner.token) });
      expectError(response, 400, 'validation_failed');
    }
  });

  it('searches titles with q, case-insensitively, among the caller’s own conversations only', async () => {
    const owner = await newUser(gateway.app);
    const stranger = await newUser(gateway.app);
    const trip = await createConversation(gateway.app, owner.token, { title: 'Trip to Lisbon' });
    const food = await createConversation(gateway.app, owner.token, { title: 'lisbon food' });
    await createConversation(gateway.app, owner.token, { title: 'Porto' });
    const budget = await createConversation(gateway.app, owner.token, { title: 'Budget 100%_done' });
    await createConversation(gateway.app, stranger.token, { title: 'Lisbon secrets' });

    expect((await list(owner.token, '?q=LISBON')).data.map((conversation) => conversation.id)).toEqual([food.id, trip.id]);
    expect((await list(owner.token, '?q=to%20lis')).data.map((conversation) => conversation.id)).toEqual([trip.id]);
    // Wildcard characters are searched for literally.
    expect((await list(owner.token, `?q=${encodeURIComponent('%')}`)).data.map((conversation) => conversation.id)).toEqual([budget.id]);
    expect((await list(owner.token, `?q=${encodeURIComponent('0%_d')}`)).data.map((conversation) => conversation.id)).toEqual([budget.id]);
    expect((await list(owner.token, '?q=_')).data.map((conversation) => conversation.id)).toEqual([budget.id]);
    expect((await list(owner.token, '?q=madrid')).data).toEqual([]);

    // The search pages like the list.
    const pages = await allPages(owner.token, 1, '&q=lisbon');
    expect(pages.flatMap((page) => page.data.map((conversation) => conversation.id))).toEqual([food.id, trip.id]);
  });
});
