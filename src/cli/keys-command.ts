// `keys create | revoke`: API keys for programs, from the command line.
import { CliError, parseFlags, required, runSubcommand, withAccounts } from './runtime.js';

const usage = `Usage: keys <action> [options]

  create --email OWNER_EMAIL --name NAME [--expires-in-days N]
         prints the key once: store it now
  revoke --email OWNER_EMAIL --id KEY_ID`;

export function runKeysCommand(argv: string[]): Promise<number> {
  return runSubcommand(argv, usage, (action, rest) =>
    withAccounts(async (accounts) => {
      const { values } = parseFlags(rest, { values: action === 'create' ? ['email', 'name', 'expires-in-days'] : ['email', 'id'], switches: [] });
      const owner = await accounts.users.findByEmail(required(values, 'email').trim());
      if (owner === undefined) throw new CliError('No user with that email');
      if (action === 'create') {
        const days = values['expires-in-days'] === undefined ? undefined : Number(values['expires-in-days']);
        if (days !== undefined && (!Number.isInteger(days) || days < 1)) throw new CliError('--expires-in-days must be a positive integer');
        const { record, key } = await accounts.apiKeysService.create({ userId: owner.id, name: required(values, 'name'), expiresInDays: days });
        console.log(JSON.stringify({ id: record.id, name: record.name, prefix: record.prefix, key }));
        return 0;
      }
      if (action === 'revoke') {
        await accounts.apiKeysService.revoke({ userId: owner.id, id: required(values, 'id') });
        console.log('revoked');
        return 0;
      }
      throw new CliError(`Unknown keys action "${action}"\n\n${usage}`);
    }),
  );
}
