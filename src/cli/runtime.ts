// What CLI commands share: the configuration, and the database and store opened for one command.
import pino from 'pino';
import { ConfigError, parseConfig, readEnvironment, type Config } from '../config.js';
import { GatewayError } from '../errors.js';
import { createAccounts, type Accounts } from '../auth/index.js';
import { openDatabase, type DatabaseHandle } from '../platform/database.js';
import { resolveJwtSecret } from '../platform/jwt-secret.js';
import { createMigrationRunner } from '../platform/migrations.js';
import { openStore } from '../platform/store.js';

export class CliError extends Error {}

export function loadCliConfig(): Config {
  try {
    return resolveJwtSecret(parseConfig(readEnvironment({ processEnvironment: process.env })).config);
  } catch (error) {
    if (error instanceof ConfigError) throw new CliError(error.message);
    throw error;
  }
}

/** Opens the database (migrated when AUTO_MIGRATE is on) and the store, runs the action, closes both. */
export async function withAccounts<T>(action: (accounts: Accounts, database: DatabaseHandle) => Promise<T>): Promise<T> {
  const config = loadCliConfig();
  const database = await openDatabase({ database: config.database, dataDirectory: config.dataDirectory });
  const store = await openStore({ redis: config.redis });
  const logger = pino({ level: 'warn' }, pino.destination(2));
  try {
    if (config.database.autoMigrate) await createMigrationRunner({ database }).latest();
    const accounts = createAccounts({ config, db: database.db, store, logger });
    try {
      return await action(accounts, database);
    } finally {
      await accounts.close();
    }
  } finally {
    await store.close();
    await database.close();
  }
}

/** Reads `--name value` and `--flag` arguments; unknown flags are an error, not ignored. */
export function parseFlags(argv: string[], known: { values: string[]; switches: string[] }): { values: Record<string, string>; switches: Set<string> } {
  const values: Record<string, string> = {};
  const switches = new Set<string>();
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index] ?? '';
    const name = argument.replace(/^--/, '');
    if (!argument.startsWith('--')) throw new CliError(`Unexpected argument "${argument}"`);
    if (known.switches.includes(name)) {
      switches.add(name);
    } else if (known.values.includes(name)) {
      const value = argv[index + 1];
      if (value === undefined || value.startsWith('--')) throw new CliError(`--${name} needs a value`);
      values[name] = value;
      index += 1;
    } else {
      throw new CliError(`Unknown option ${argument}`);
    }
  }
  return { values, switches };
}

export function required(values: Record<string, string>, name: string): string {
  const value = values[name];
  if (value === undefined) throw new CliError(`--${name} is required`);
  return value;
}

/** A password from --password, the USER_PASSWORD variable, or one line of standard input. */
export async function readPassword(values: Record<string, string>): Promise<string> {
  const given = values.password ?? process.env.USER_PASSWORD;
  if (given !== undefined) return given;
  if (process.stdin.isTTY) process.stderr.write('Password: ');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    if (Buffer.concat(chunks).includes(10)) break;
  }
  const line = Buffer.concat(chunks).toString('utf8').split('\n')[0]?.replace(/\r$/, '') ?? '';
  if (line === '') throw new CliError('No password given (use --password, USER_PASSWORD or standard input)');
  return line;
}

/**
 * Runs one action of a subcommand: prints the usage for help (exit 0) or no action (exit 1), and
 * turns expected failures (bad input, a refused change) into one line on stderr and exit 1.
 */
export async function runSubcommand(argv: string[], usage: string, run: (action: string, rest: string[]) => Promise<number>): Promise<number> {
  const [action, ...rest] = argv;
  if (action === undefined || action === '--help' || action === 'help' || rest.includes('--help')) {
    console.log(usage);
    return action === undefined ? 1 : 0;
  }
  try {
    return await run(action, rest);
  } catch (error) {
    if (error instanceof GatewayError || error instanceof CliError) {
      console.error(error.message);
      return 1;
    }
    throw error;
  }
}
