// The database: Kysely over `pg` when DATABASE_URL names a PostgreSQL server, over PGlite (real
// PostgreSQL compiled to WASM, kept in the data folder) when it does not. Same SQL on both.
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Config } from '../config.js';
import type { DatabaseTables } from './database-tables.js';
import { createPglitePoolAdapter } from './pglite-pool.js';

export type Database = Kysely<DatabaseTables>;

export interface DatabaseHandle {
  db: Database;
  kind: 'postgresql' | 'pglite';
  schema: string;
  /** One cheap round trip, for health checks. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

const int8TypeId = 20;

/** `pg` returns bigint columns as strings; PGlite returns numbers. Counts and token sums fit in a double. */
const postgresTypes = new pg.TypeOverrides();
postgresTypes.setTypeParser(int8TypeId, 'text', Number);

export async function openDatabase(options: { database: Config['database']; dataDirectory: string }): Promise<DatabaseHandle> {
  const { url, schema, poolSize } = options.database;
  if (url !== null && url !== 'memory://') {
    const pool = new pg.Pool({
      connectionString: url,
      max: poolSize,
      types: postgresTypes,
      // The schema is set per connection, so every query and the migration table land in it.
      options: `-c search_path=${schema}`,
      connectionTimeoutMillis: 5000,
      idleTimeoutMillis: 30_000,
    });
    // A client losing its server must not crash the process; the query on it reports the failure.
    // The pool listens for errors of idle clients only: one checked out (in a transaction, or
    // between acquiring and querying) would emit an 'error' nobody hears, which Node makes fatal.
    pool.on('error', () => undefined);
    pool.on('connect', (client) => client.on('error', () => undefined));
    const db = new Kysely<DatabaseTables>({ dialect: new PostgresDialect({ pool }) });
    return wrap({ db, kind: 'postgresql', schema });
  }

  let dataDirectory: string | undefined;
  if (url === null) {
    dataDirectory = join(options.dataDirectory, 'pglite');
    mkdirSync(dataDirectory, { recursive: true });
  }
  const embedded = await PGlite.create(dataDirectory);
  if (schema !== 'public') {
    await embedded.exec(`CREATE SCHEMA IF NOT EXISTS "${schema}"; SET search_path TO "${schema}";`);
  }
  const db = new Kysely<DatabaseTables>({ dialect: new PostgresDialect({ pool: createPglitePoolAdapter(embedded) }) });
  return wrap({ db, kind: 'pglite', schema });
}

function wrap(handle: Pick<DatabaseHandle, 'db' | 'kind' | 'schema'>): DatabaseHandle {
  return {
    ...handle,
    async ping() {
      await sql`select 1`.execute(handle.db);
    },
    async close() {
      await handle.db.destroy();
    },
  };
}

/** Creates the configured schema on a PostgreSQL server when it does not exist yet. */
export async function ensureSchema(handle: DatabaseHandle): Promise<void> {
  if (handle.schema === 'public') return;
  await sql`create schema if not exists ${sql.id(handle.schema)}`.execute(handle.db);
}
