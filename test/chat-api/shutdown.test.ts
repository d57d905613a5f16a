// A gateway that shuts down while a stream runs tells the client (an error event, then [DONE]) and
// saves the answer so far as `interrupted` before its database closes. The row is read after the
// close: on PostgreSQL through a second instance, on PGlite by opening its data folder again.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/sim/index.js';
import { hasRealServices } from '../helpers/environment.js';
import {
  contentChunkCount,
  fullRunText,
  generationRequestWith,
  marker,
  newUser,
  OpenStream,
  partialContent,
  readChatStream,
  SIM_CREATED,
  startChatGateway,
  type ChatGateway,
} from '../helpers/chat-fixtures.js';

interface SavedMessage {
  status: string;
  status_reason: string | null;
  content: string;
}

describe('chat API: shutdown while a stream runs', () => {
  let simulator: Simulator;
  let reference: Simulator;

  beforeAll(async () => {
    simulator = await startSimulator({ created: SIM_CREATED, interTokenMs: 40 });
    reference = await startSimulator({ created: SIM_CREATED });
  });

  afterAll(async () => {
    await simulator.close();
    await reference.close();
  });

  /** Streams on `gateway`, closes it after a few chunks, checks what the client saw; returns the ids. */
  async function streamThenClose(gateway: ChatGateway, token: string, content: string): Promise<{ assistantMessageId: string; seen: string }> {
    const stream = new OpenStream({ url: gateway.url, path: '/api/chat', token, body: { messages: [{ role: 'user', content }], max_tokens: 200, ignore_eos: true, seed: 5 } });
    const opening = await stream.opening();
    const seen = partialContent(await stream.waitFor((text) => contentChunkCount(text) >= 3));
    const started = Date.now();
    await gateway.app.close();
    // Shutdown does not wait for the 8-second answer.
    expect(Date.now() - started).toBeLessThan(5000);

    const received = readChatStream(await stream.finish());
    expect(received.errors, received.text.slice(-300)).toHaveLength(1);
    expect(received.done).toBe(true);
    // The error comes right before [DONE].
    const lastTwo = received.events.slice(-2).map((event) => event.data);
    expect(lastTwo[1]).toBe('[DONE]');
    expect(lastTwo[0]).toContain('"error"');
    expect(received.content.startsWith(seen)).toBe(true);
    await simulator.waitForStats((stats) => stats.running === 0, 2000);
    return { assistantMessageId: opening.assistant_message_id!, seen: received.content };
  }

  async function expectSavedInterrupted(saved: SavedMessage | undefined, content: string, seen: string): Promise<void> {
    expect(saved).toBeDefined();
    const full = await fullRunText(reference, generationRequestWith(simulator, content));
    expect(saved!.status).toBe('interrupted');
    expect(saved!.status_reason).toEqual(expect.any(String));
    expect(saved!.content.length).toBeGreaterThan(0);
    expect(saved!.content.startsWith(seen)).toBe(true);
    expect(full.startsWith(saved!.content)).toBe(true);
  }

  it.skipIf(!hasRealServices)('PostgreSQL: the interrupted answer is saved before the instance stops', async () => {
    const survivor = await startChatGateway({ backend: 'real', simulator });
    try {
      const closing = await startChatGateway({ backend: 'real', simulator, sharing: survivor.testApp });
      const user = await newUser(closing.app);
      const content = marker('shutdown-pg');
      const { assistantMessageId, seen } = await streamThenClose(closing, user.token, content);
      const saved = await survivor.app.gateway.database.db.selectFrom('messages').select(['status', 'status_reason', 'content']).where('id', '=', assistantMessageId).executeTakeFirst();
      await expectSavedInterrupted(saved, content, seen);
    } finally {
      await survivor.close();
    }
  });

  it('PGlite: the interrupted answer is in the data folder after the process closed it', async () => {
    const dataDirectory = await mkdtemp(join(tmpdir(), 'chat-shutdown-'));
    try {
      const gateway = await startChatGateway({ backend: 'embedded', simulator, environment: { DATABASE_URL: '', DATA_DIR: dataDirectory } });
      const user = await newUser(gateway.app);
      const content = marker('shutdown-pglite');
      const { assistantMessageId, seen } = await streamThenClose(gateway, user.token, content);

      const database = await PGlite.create(join(dataDirectory, 'pglite'));
      try {
        const result = await database.query<SavedMessage>('select status, status_reason, content from messages where id = $1', [assistantMessageId]);
        await expectSavedInterrupted(result.rows[0], content, seen);
      } finally {
        await database.close();
      }
    } finally {
      await rm(dataDirectory, { recursive: true, force: true });
    }
  });
});
