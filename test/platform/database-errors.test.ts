// Telling "PostgreSQL cannot be reached" (503, retry) apart from a query's own failure (500): the
// classifier against errors produced for real by `pg`, pg-pool, Kysely, PGlite and (when
// configured) a PostgreSQL server, and the error handler's answer for each through the real app.
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDatabaseUnavailable } from '../../src/platform/database-errors.js';
import { expectError } from '../helpers/auth-client.js';
import { testDatabaseUrl } from '../helpers/environment.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';

/** Nothing listens on port 1 of the loopback address: connecting is refused at once. */
const refusedUrl = 'postgres://postgres@127.0.0.1:1/test';

async function rejectionOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(Error);
    return error as Error;
  }
  throw new Error('expected a rejection');
}

/** A TCP server that treats every connection with `onConnection` (hang up, or say nothing). */
async function startServer(onConnection: (socket: Socket) => void): Promise<{ url: string; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    url: `postgres://postgres@127.0.0.1:${address.port}/test`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The error a query through Kysely over a pg pool (as the app queries) rejects with. */
async function kyselyQueryError(pool: pg.Pool): Promise<Error> {
  pool.on('error', () => undefined);
  const db = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool }) });
  try {
    return await rejectionOf(sql`select 1`.execute(db));
  } finally {
    await db.destroy();
  }
}

/** A real server-side error (pg's DatabaseError) with the SQLSTATE `code`. */
function databaseError(code: string, message = `server error ${code}`): pg.DatabaseError {
  const error = new pg.DatabaseError(message, message.length, 'error');
  error.code = code;
  return error;
}

describe('isDatabaseUnavailable, on errors pg produces without a server', () => {
  it('counts a refused connection (ECONNREFUSED from pg.Client.connect)', async () => {
    const client = new pg.Client({ connectionString: refusedUrl });
    const error = await rejectionOf(client.connect());
    expect(error).toMatchObject({ code: 'ECONNREFUSED' });
    expect(isDatabaseUnavailable(error)).toBe(true);
  });

  it('counts a refused connection met by a query through Kysely over a pg pool', async () => {
    const error = await kyselyQueryError(new pg.Pool({ connectionString: refusedUrl, max: 1 }));
    expect(error).toMatchObject({ code: 'ECONNREFUSED' });
    expect(isDatabaseUnavailable(error)).toBe(true);
  });

  it('counts a server that hangs up during the handshake ("Connection terminated unexpectedly")', async () => {
    const server = await startServer((socket) => socket.destroy());
    try {
      const error = await kyselyQueryError(new pg.Pool({ connectionString: server.url, max: 1 }));
      expect(error.message).toMatch(/Connection terminated/);
      expect(isDatabaseUnavailable(error)).toBe(true);
    } finally {
      await server.close();
    }
  });

  it('counts a pool connection attempt that times out (a server that never answers)', async () => {
    const server = await startServer(() => undefined);
    try {
      const error = await kyselyQueryError(new pg.Pool({ connectionString: server.url, max: 1, connectionTimeoutMillis: 200 }));
      expect(error.message).toMatch(/timeout/);
      expect(isDatabaseUnavailable(error)).toBe(true);
    } finally {
      await server.close();
    }
  });

  it.each(['08000', '08001', '08003', '08004', '08006', '08P01', '57P01', '57P02', '57P03', '57P04', '53300'])('counts SQLSTATE %s', (code) => {
    expect(isDatabaseUnavailable(databaseError(code))).toBe(true);
  });

  it.each(['ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])('counts the socket error %s', (code) => {
    expect(isDatabaseUnavailable(Object.assign(new Error(`connect ${code} db.internal:5432`), { code }))).toBe(true);
  });

  it.each([
    ['42601', 'syntax error at or near "selec"'],
    ['42P01', 'relation "nope" does not exist'],
    ['23505', 'duplicate key value violates unique constraint "users_email_key"'],
    ['57014', 'canceling statement due to statement timeout'],
    ['40001', 'could not serialize access due to concurrent update'],
    ['53200', 'out of memory'],
    ['22P02', 'invalid input syntax for type uuid: "x"'],
  ])('does not count a query failure (SQLSTATE %s)', (code, message) => {
    expect(isDatabaseUnavailable(databaseError(code, message))).toBe(false);
  });

  it('does not count values that are not errors, even with a connection code or message', () => {
    for (const value of [undefined, null, 'ECONNREFUSED', 'Connection terminated unexpectedly', { code: 'ECONNREFUSED', message: 'connect ECONNREFUSED' }, { code: '08006' }, 42]) {
      expect(isDatabaseUnavailable(value), String(JSON.stringify(value))).toBe(false);
    }
  });

  it('does not count an ordinary bug', () => {
    expect(isDatabaseUnavailable(new TypeError("Cannot read properties of undefined (reading 'id')"))).toBe(false);
    expect(isDatabaseUnavailable(new Error('no result'))).toBe(false);
  });
});

describe('isDatabaseUnavailable, on errors of a running database', () => {
  let embeddedApp: TestApp;

  beforeAll(async () => {
    embeddedApp = await createTestApp({ backend: 'embedded' });
  });

  afterAll(async () => {
    await embeddedApp.close();
  });

  it('does not count a syntax error from the embedded database (PGlite)', async () => {
    const error = await rejectionOf(sql`selec 1`.execute(embeddedApp.app.gateway.database.db));
    expect(error).toMatchObject({ code: '42601' });
    expect(isDatabaseUnavailable(error)).toBe(false);
  });

  it('does not count a missing table or a unique violation from the embedded database', async () => {
    const db = embeddedApp.app.gateway.database.db;
    expect(isDatabaseUnavailable(await rejectionOf(sql`select * from no_such_table`.execute(db)))).toBe(false);
    await sql`create temporary table unique_things (name text primary key)`.execute(db);
    await sql`insert into unique_things values ('a')`.execute(db);
    const duplicate = await rejectionOf(sql`insert into unique_things values ('a')`.execute(db));
    expect(duplicate).toMatchObject({ code: '23505' });
    expect(isDatabaseUnavailable(duplicate)).toBe(false);
  });

  describe.skipIf(testDatabaseUrl === null)('on real PostgreSQL', () => {
    let pool: pg.Pool;

    beforeAll(() => {
      pool = new pg.Pool({ connectionString: testDatabaseUrl!, max: 2 });
      pool.on('error', () => undefined);
    });

    afterAll(async () => {
      await pool.end();
    });

    it('does not count a syntax error, a missing table or a statement timeout', async () => {
      const syntax = await rejectionOf(pool.query('selec 1'));
      expect(syntax).toMatchObject({ code: '42601' });
      expect(isDatabaseUnavailable(syntax)).toBe(false);
      const missing = await rejectionOf(pool.query('select * from no_such_table_anywhere'));
      expect(missing).toMatchObject({ code: '42P01' });
      expect(isDatabaseUnavailable(missing)).toBe(false);
      const client = await pool.connect();
      try {
        await client.query('set statement_timeout = 20');
        const timeout = await rejectionOf(client.query('select pg_sleep(2)'));
        expect(timeout).toMatchObject({ code: '57014' });
        expect(isDatabaseUnavailable(timeout)).toBe(false);
      } finally {
        client.release(true);
      }
    });

    it('counts a pool with no connection to give in time ("timeout exceeded when trying to connect")', async () => {
      const small = new pg.Pool({ connectionString: testDatabaseUrl!, max: 1, connectionTimeoutMillis: 200 });
      const held = await small.connect();
      try {
        const error = await rejectionOf(small.query('select 1'));
        expect(error.message).toMatch(/timeout exceeded when trying to connect/);
        expect(isDatabaseUnavailable(error)).toBe(true);
      } finally {
        held.release();
        await small.end();
      }
    });

    it('counts a connection the server terminates (57P01), and the query on the broken connection after it', async () => {
      const victim = new pg.Client({ connectionString: testDatabaseUrl! });
      victim.on('error', () => undefined);
      await victim.connect();
      try {
        const { rows } = await victim.query<{ pid: number }>('select pg_backend_pid() as pid');
        const running = rejectionOf(victim.query('select pg_sleep(10)'));
        // Wait until the sleep is really running before terminating its backend.
        for (let attempt = 0; attempt < 100; attempt += 1) {
          const { rows: active } = await pool.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where pid = $1 and query like 'select pg_sleep%'", [rows[0]!.pid]);
          if (active[0]!.n > 0) break;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        await pool.query('select pg_terminate_backend($1)', [rows[0]!.pid]);
        const terminated = await running;
        expect(terminated).toMatchObject({ code: '57P01' });
        expect(isDatabaseUnavailable(terminated)).toBe(true);
        const after = await rejectionOf(victim.query('select 1'));
        expect(isDatabaseUnavailable(after)).toBe(true);
      } finally {
        await victim.end().catch(() => undefined);
      }
    });
  });
});

describe('the error handler answers an unreachable database with 503 and Retry-After', () => {
  let testApp: TestApp;
  let refused: Error;
  let terminated: Error;

  beforeAll(async () => {
    refused = await rejectionOf(new pg.Client({ connectionString: refusedUrl }).connect());
    const hangUp = await startServer((socket) => socket.destroy());
    try {
      terminated = await kyselyQueryError(new pg.Pool({ connectionString: hangUp.url, max: 1 }));
    } finally {
      await hangUp.close();
    }
    testApp = await createTestApp({
      backend: 'embedded',
      build: {
        extend: async (app) => {
          app.get('/test/db/refused', () => {
            throw refused;
          });
          app.get('/test/db/terminated', async () => {
            throw terminated;
          });
          app.get('/test/db/admin-shutdown', async () => {
            throw databaseError('57P01', 'terminating connection due to administrator command');
          });
          // A query's own failure, from the app's own (embedded) database.
          app.get('/test/db/syntax', async () => {
            await sql`selec 1`.execute(app.gateway.database.db);
            return { unreachable: true };
          });
          app.get('/test/db/bug', () => {
            throw new Error('connection string parser said: nope');
          });
          // What Fastify raises when a client hangs up mid-upload: a 400 with the socket's ECONNRESET.
          app.get('/test/client-aborted', () => {
            throw Object.assign(new Error('aborted'), { code: 'ECONNRESET', statusCode: 400 });
          });
        },
      },
    });
  });

  afterAll(async () => {
    await testApp.close();
  });

  it.each(['/test/db/refused', '/test/db/terminated', '/test/db/admin-shutdown'])('GET %s → 503 service_unavailable with retry-after: 1', async (url) => {
    const response = await testApp.app.inject({ method: 'GET', url, headers: { 'x-request-id': 'db-down-1' } });
    const body = expectError(response, 503, 'service_unavailable');
    expect(body.error.type).toBe('server_error');
    expect(body.error.message).not.toContain('127.0.0.1');
    expect(response.headers['retry-after']).toBe('1');
    expect(response.headers['x-request-id']).toBe('db-down-1');
  });

  it('keeps a client error that carries a connection code (an aborted upload) a 4xx, not a 503', async () => {
    const response = await testApp.app.inject({ method: 'GET', url: '/test/client-aborted' });
    expectError(response, 400, 'invalid_request');
    expect(response.headers['retry-after']).toBeUndefined();
  });

  it.each(['/test/db/syntax', '/test/db/bug'])('GET %s → 500 internal_error, no retry-after', async (url) => {
    const response = await testApp.app.inject({ method: 'GET', url });
    const body = expectError(response, 500, 'internal_error');
    expect(body.error.message).not.toMatch(/selec|nope/);
    expect(response.headers['retry-after']).toBeUndefined();
  });
});
