// A gateway that died mid-generation leaves assistant messages in `streaming`. A gateway starting on
// the same database marks them `interrupted`: on shared PostgreSQL + Redis only those older than any
// generation may last (UPSTREAM_TOTAL_TIMEOUT_MS + 60 s), since another instance may still be
// generating the others; alone on PGlite with the in-process store, every one left from before.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/sim/index.js';
import type { App } from '../../src/app.js';
import { hasRealServices } from '../helpers/environment.js';
import { createConversation, eventually, messageById, newUser, SIM_CREATED, startChatGateway } from '../helpers/chat-fixtures.js';

const TOTAL_TIMEOUT_MS = 1000;

async function insertStreaming(app: App, conversationId: string, createdAt: Date): Promise<string> {
  const row = await app.gateway.database.db
    .insertInto('messages')
    .values({ conversation_id: conversationId, role: 'assistant', status: 'streaming', content: '', model: 'sim-llama-3-8b', created_at: createdAt, updated_at: createdAt })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

async function statusOf(app: App, messageId: string): Promise<{ status: string; status_reason: string | null }> {
  return app.gateway.database.db.selectFrom('messages').select(['status', 'status_reason']).where('id', '=', messageId).executeTakeFirstOrThrow();
}

describe('chat API: messages left streaming by a dead gateway are marked interrupted', () => {
  let simulator: Simulator;

  beforeAll(async () => {
    simulator = await startSimulator({ created: SIM_CREATED });
  });

  afterAll(async () => {
    await simulator.close();
  });

  it.skipIf(!hasRealServices)('PostgreSQL: a new instance marks the old ones, and leaves recent ones to whoever runs them', async () => {
    const environment = { UPSTREAM_TOTAL_TIMEOUT_MS: String(TOTAL_TIMEOUT_MS) };
    const first = await startChatGateway({ backend: 'real', simulator, environment });
    try {
      const user = await newUser(first.app);
      const conversation = await createConversation(first.app, user.token, { title: 'Crashed' });
      const stale = await insertStreaming(first.app, conversation.id, new Date(Date.now() - TOTAL_TIMEOUT_MS - 5 * 60_000));
      const recent = await insertStreaming(first.app, conversation.id, new Date(Date.now() - 5_000));

      const second = await startChatGateway({ backend: 'real', simulator, environment, sharing: first.testApp });
      try {
        const swept = await eventually(() => statusOf(second.app, stale), (row) => row.status !== 'streaming', 5000);
        expect(swept.status).toBe('interrupted');
        expect(swept.status_reason).toEqual(expect.any(String));
        expect((await statusOf(second.app, recent)).status).toBe('streaming');
        // The API shows it too.
        expect((await messageById(first.app, user.token, conversation.id, stale)).status).toBe('interrupted');
      } finally {
        await second.close();
      }
    } finally {
      await first.close();
    }
  });

  it('PGlite: the gateway restarted on the same data folder marks every message left streaming', async () => {
    const dataDirectory = await mkdtemp(join(tmpdir(), 'chat-sweep-'));
    const environment = { DATABASE_URL: '', DATA_DIR: dataDirectory, UPSTREAM_TOTAL_TIMEOUT_MS: String(TOTAL_TIMEOUT_MS), JWT_SECRET: randomBytes(32).toString('hex') };
    try {
      const first = await startChatGateway({ backend: 'embedded', simulator, environment });
      const user = await newUser(first.app);
      const conversation = await createConversation(first.app, user.token, { title: 'Crashed' });
      const stale = await insertStreaming(first.app, conversation.id, new Date(Date.now() - TOTAL_TIMEOUT_MS - 5 * 60_000));
      const recent = await insertStreaming(first.app, conversation.id, new Date(Date.now() - 1000));
      await first.close();

      const second = await startChatGateway({ backend: 'embedded', simulator, environment });
      try {
        for (const messageId of [stale, recent]) {
          const swept = await eventually(() => statusOf(second.app, messageId), (row) => row.status !== 'streaming', 5000);
          expect(swept.status).toBe('interrupted');
          expect(swept.status_reason).toEqual(expect.any(String));
        }
        expect((await messageById(second.app, user.token, conversation.id, recent)).status).toBe('interrupted');
      } finally {
        await second.close();
      }
    } finally {
      await rm(dataDirectory, { recursive: true, force: true });
    }
  });
});
