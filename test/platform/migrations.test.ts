import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../../src/platform/database.js';
import { createMigrationFiles, createMigrationRunner, defaultMigrationsDirectory } from '../../src/platform/migrations.js';
import { backends, dropSchema, testConfig } from '../helpers/environment.js';

async function tableNames(database: DatabaseHandle): Promise<string[]> {
  const result = await sql<{ table_name: string }>`
    select table_name from information_schema.tables
    where table_schema = ${database.schema} and table_name not like 'kysely_%' order by table_name`.execute(database.db);
  return result.rows.map((row) => row.table_name);
}

describe.each(backends)('migrations on the %s backend', (backend) => {
  let database: DatabaseHandle | undefined;

  afterEach(async () => {
    if (database !== undefined) {
      await database.close();
      if (backend === 'real') await dropSchema(database.schema);
    }
    database = undefined;
  });

  it('go up, all the way down, and up again', async () => {
    const config = testConfig({ backend, environment: { AUTO_MIGRATE: 'false' } });
    database = await openDatabase({ database: config.database, dataDirectory: config.dataDirectory });
    const runner = createMigrationRunner({ database });
    const files = readdirSync(defaultMigrationsDirectory).filter((file) => file.endsWith('.up.sql'));

    expect((await runner.status()).every((migration) => migration.executedAt === null)).toBe(true);
    const applied = await runner.latest();
    expect(applied).toHaveLength(files.length);
    expect(await tableNames(database)).toEqual(expect.arrayContaining(['users', 'sessions', 'refresh_tokens', 'api_keys']));
    expect(await runner.latest()).toEqual([]);

    for (let step = files.length; step > 0; step -= 1) {
      const reverted = await runner.down();
      expect(reverted).toHaveLength(1);
      expect(reverted[0]).toMatch(/^reverted \d{4}_/);
    }
    expect(await tableNames(database)).toEqual([]);
    expect(await runner.down()).toEqual([]);

    expect(await runner.latest()).toHaveLength(files.length);
    expect((await runner.status()).every((migration) => migration.executedAt instanceof Date)).toBe(true);
  });

  it('enforce case-insensitive unique emails in the schema itself', async () => {
    const config = testConfig({ backend, environment: { AUTO_MIGRATE: 'false' } });
    database = await openDatabase({ database: config.database, dataDirectory: config.dataDirectory });
    await createMigrationRunner({ database }).latest();
    await sql`insert into users (email, password_hash) values ('Case@Example.com', 'x')`.execute(database.db);
    await expect(sql`insert into users (email, password_hash) values ('case@example.COM', 'x')`.execute(database.db)).rejects.toThrow(/unique|duplicate/i);
  });
});

describe('migrate new', () => {
  it('creates a numbered up/down pair after the newest migration', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'migrations-'));
    const first = await createMigrationFiles({ name: 'Create widgets', directory });
    expect(first.map((path) => path.slice(directory.length + 1))).toEqual(['0001_create_widgets.up.sql', '0001_create_widgets.down.sql']);
    const second = await createMigrationFiles({ name: 'add colour', directory });
    expect(second[0]).toContain('0002_add_colour.up.sql');
    expect(readFileSync(second[1]!, 'utf8')).toContain('revert');
    await expect(createMigrationFiles({ name: '!!!', directory })).rejects.toThrow(/name/);
  });
});
