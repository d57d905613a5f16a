// Schema migrations as plain SQL files (migrations/NNNN_name.up.sql and .down.sql), run by
// Kysely's migrator, which records them in a table and holds a lock so two instances never race.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Migrator, sql, type Migration, type MigrationProvider, type MigrationResultSet } from 'kysely';
import { ensureSchema, type DatabaseHandle } from './database.js';
import { sqlStateOf } from './database-errors.js';
import { findProjectRoot } from './project-root.js';

export const defaultMigrationsDirectory = join(findProjectRoot(), 'migrations');

const migrationFilePattern = /^(\d{4}_[a-z0-9_]+)\.(up|down)\.sql$/;

export class SqlFileMigrationProvider implements MigrationProvider {
  constructor(private readonly directory: string) {}

  async getMigrations(): Promise<Record<string, Migration>> {
    const files = await readdir(this.directory);
    const names = new Set<string>();
    for (const file of files) {
      const match = migrationFilePattern.exec(file);
      if (match?.[1] !== undefined) names.add(match[1]);
    }
    const migrations: Record<string, Migration> = {};
    for (const name of [...names].sort()) {
      const up = await this.readOptional(`${name}.up.sql`);
      const down = await this.readOptional(`${name}.down.sql`);
      if (up === null) throw new Error(`Migration ${name} has no ${name}.up.sql`);
      if (down === null) throw new Error(`Migration ${name} has no ${name}.down.sql`);
      migrations[name] = {
        up: async (db) => {
          await sql.raw(up).execute(db);
        },
        down: async (db) => {
          await sql.raw(down).execute(db);
        },
      };
    }
    return migrations;
  }

  private async readOptional(file: string): Promise<string | null> {
    try {
      return await readFile(join(this.directory, file), 'utf8');
    } catch {
      return null;
    }
  }
}

export interface MigrationStatus {
  name: string;
  executedAt: Date | null;
}

export function createMigrationRunner(options: { database: DatabaseHandle; directory?: string }) {
  const { database } = options;
  const migrator = new Migrator({
    db: database.db,
    provider: new SqlFileMigrationProvider(options.directory ?? defaultMigrationsDirectory),
    // Always qualified: otherwise Kysely would find another schema's migration table and skip creating ours.
    migrationTableSchema: database.schema,
  });

  async function run(action: () => Promise<MigrationResultSet>): Promise<string[]> {
    let outcome: MigrationResultSet;
    for (let attempt = 1; ; attempt += 1) {
      await ensureSchema(database);
      outcome = await action();
      // Kysely looks for its table through every schema's privileges; a schema another process drops
      // meanwhile (tests, or another application on the server) fails that lookup, not our migration.
      if (attempt < 3 && isAnotherSchemaGone(outcome.error, database.schema)) continue;
      break;
    }
    const { error, results } = outcome;
    if (error !== undefined) {
      const failed = results?.find((result) => result.status === 'Error');
      throw new Error(`Migration ${failed?.migrationName ?? ''} failed: ${describe(error)}`, { cause: error });
    }
    return (results ?? []).map((result) => `${result.direction === 'Up' ? 'applied' : 'reverted'} ${result.migrationName}`);
  }

  return {
    latest: () => run(() => migrator.migrateToLatest()),
    down: () => run(() => migrator.migrateDown()),
    async status(): Promise<MigrationStatus[]> {
      await ensureSchema(database);
      const migrations = await migrator.getMigrations();
      return migrations.map((migration) => ({ name: migration.name, executedAt: migration.executedAt ?? null }));
    },
  };
}

export type MigrationRunner = ReturnType<typeof createMigrationRunner>;

/** Writes an empty up/down pair numbered after the newest migration; returns the two paths. */
export async function createMigrationFiles(options: { name: string; directory?: string }): Promise<string[]> {
  const directory = options.directory ?? defaultMigrationsDirectory;
  const slug = options.name.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '');
  if (slug === '') throw new Error('A migration needs a name made of letters or digits');
  const numbers = (await readdir(directory))
    .map((file) => migrationFilePattern.exec(file)?.[1]?.slice(0, 4))
    .filter((value): value is string => value !== undefined)
    .map(Number);
  const next = String(Math.max(0, ...numbers) + 1).padStart(4, '0');
  const paths = [join(directory, `${next}_${slug}.up.sql`), join(directory, `${next}_${slug}.down.sql`)];
  await writeFile(paths[0]!, `-- ${options.name}: apply\n`, { flag: 'wx' });
  await writeFile(paths[1]!, `-- ${options.name}: revert exactly what the .up.sql file did\n`, { flag: 'wx' });
  return paths;
}

/** SQLSTATE 3F000 (invalid schema name) naming a schema that is not ours. */
function isAnotherSchemaGone(error: unknown, ourSchema: string): boolean {
  if (!(error instanceof Error) || sqlStateOf(error) !== '3F000') return false;
  return !error.message.includes(`"${ourSchema}"`);
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
