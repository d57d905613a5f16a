// The gateway's command line: one entry with subcommands (`migrate`, …). Usage: `npm run cli -- help`.
import { runKeysCommand } from './keys-command.js';
import { runMigrateCommand } from './migrate-command.js';
import { runUsersCommand } from './users-command.js';

/** The simulator has its own entry (src/sim/cli.ts); loading it runs it with these arguments. */
async function runSimulatorCommand(argv: string[]): Promise<number> {
  process.argv = [process.argv[0] ?? 'node', 'sim', ...argv];
  await import('../sim/cli.js');
  // The simulator keeps the process alive until a signal; never resolve so main() does not exit.
  return new Promise<number>(() => undefined);
}

const commands: Record<string, { summary: string; run: (argv: string[]) => Promise<number> }> = {
  migrate: { summary: 'latest | down | status | new NAME: manage the database schema', run: runMigrateCommand },
  users: { summary: 'create | list | set-role | disable | enable: manage accounts', run: runUsersCommand },
  keys: { summary: 'create | revoke: manage API keys', run: runKeysCommand },
  sim: { summary: 'run the vLLM simulator (--help for its options)', run: runSimulatorCommand },
};

function printHelp(): void {
  console.log('Usage: npm run cli -- <command> [arguments]   (or: node dist/src/cli/main.js <command>)\n\nCommands:');
  for (const [name, command] of Object.entries(commands)) console.log(`  ${name.padEnd(10)} ${command.summary}`);
  console.log('\nEach command takes --help.');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    printHelp();
    return name === undefined ? 1 : 0;
  }
  const command = commands[name];
  if (command === undefined) {
    console.error(`Unknown command "${name}".`);
    printHelp();
    return 1;
  }
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
