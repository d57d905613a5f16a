// `migrate latest | down | status | new NAME`: applies, reverts or lists the SQL migrations on the
// configured database (DATABASE_URL, or the embedded PGlite in the data folder).
import { ConfigError, parseConfig, readEnvironment } from '../config.js';
import { openDatabase } from '../platform/database.js';
import { createMigrationFiles, createMigrationRunner } from '../platform/migrations.js';

const usage = `Usage: migrate <latest | down | status | new NAME>

  latest      apply every migration not applied yet
  down        revert the most recent migration
  status      list migrations and when each was applied
  new NAME    create migrations/NNNN_NAME.up.sql and .down.sql

The database is DATABASE_URL (PostgreSQL), or PGlite in DATA_DIR when unset;
DATABASE_SCHEMA picks the schema.`;

export async function runMigrateCommand(argv: string[]): Promise<number> {
  const [action, name] = argv;
  if (action === undefined || action === '--help' || action === '-h' || action === 'help') {
    console.log(usage);
    return action === undefined ? 1 : 0;
  }
  if (action === 'new') {
    if (name === undefined) {
      console.error('migrate new needs a NAME');
      return 1;
    }
    const paths = await createMigrationFiles({ name });
    for (const path of paths) console.log(`created ${path}`);
    return 0;
  }
  if (!['latest', 'down', 'status'].includes(action)) {
    console.error(`Unknown migrate action "${action}".\n\n${usage}`);
    return 1;
  }

  let config;
  try {
    config = parseConfig(readEnvironment({ processEnvironment: process.env })).config;
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 1;
    }
    throw error;
  }
  const database = await openDatabase({ database: config.database, dataDirectory: config.dataDirectory });
  try {
    const runner = createMigrationRunner({ database });
    if (action === 'status') {
      for (const migration of await runner.status()) {
        console.log(`${migration.executedAt === null ? 'pending ' : 'applied '} ${migration.name}${migration.executedAt === null ? '' : `  (${migration.executedAt.toISOString()})`}`);
      }
      return 0;
    }
    const done = action === 'latest' ? await runner.latest() : await runner.down();
    console.log(done.length === 0 ? 'nothing to do' : done.join('\n'));
    return 0;
  } finally {
    await database.close();
  }
}
