// A pooled connection whose server goes away while the gateway holds it (inside a transaction, or
// between acquiring it and querying) must not crash the process: the query on it fails, the pool
// drops it, and the next query gets a fresh connection. Without a listener on that client, pg's
// 'error' event would be an uncaught exception — vitest reports it and fails the run.
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../../src/platform/database.js';
import { isDatabaseUnavailable } from '../../src/platform/database-errors.js';
import { dropSchema, testConfig, testDatabaseUrl } from '../helpers/environment.js';

describe.skipIf(testDatabaseUrl === null)('a pooled PostgreSQL connection lost while checked out', () => {
  let handle: DatabaseHandle;
  let admin: pg.Client;

  beforeAll(async () => {
    const config = testConfig({ backend: 'real' });
    handle = await openDatabase({ database: config.database, dataDirectory: config.dataDirectory });
    admin = new pg.Client({ connectionString: testDatabaseUrl! });
    await admin.connect();
  });

  afterAll(async () => {
    await admin.end();
    await handle.close();
    await dropSchema(handle.schema);
  });

  it('fails the query on it, keeps the process alive, and serves the next query on a new connection', async () => {
    const failure = await handle.db.connection().execute(async (connection) => {
      const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(connection);
      const pid = rows[0]!.pid;
      // The server ends this backend while no query runs on it: the client sees its socket end.
      await admin.query('select pg_terminate_backend($1)', [pid]);
      for (let attempt = 0; attempt < 50; attempt += 1) {
        const { rows: alive } = await admin.query<{ n: number }>('select count(*)::int as n from pg_stat_activity where pid = $1', [pid]);
        if (alive[0]!.n === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // Let the client read the end of its socket before it is asked anything.
      await new Promise((resolve) => setTimeout(resolve, 100));
      return sql`select 1`.execute(connection).then(
        () => null,
        (error: unknown) => error,
      );
    });
    expect(failure).toBeInstanceOf(Error);
    expect(isDatabaseUnavailable(failure)).toBe(true);
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(handle.db);
    expect(rows[0]!.one).toBe(1);
  });
});
