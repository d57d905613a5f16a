// `users create | list | set-role | disable | enable`: manage accounts from the command line.
import { toUserView } from '../auth/views.js';
import { CliError, parseFlags, readPassword, required, runSubcommand, withAccounts } from './runtime.js';

const usage = `Usage: users <action> [options]

  create --email EMAIL [--password P] [--display-name NAME] [--admin]
         The password may also come from USER_PASSWORD or standard input.
  list [--email PART] [--role user|admin] [--status active|disabled] [--limit N]
  set-role --email EMAIL --role user|admin
  disable --email EMAIL      ends every session; API keys stop working
  enable --email EMAIL`;

export function runUsersCommand(argv: string[]): Promise<number> {
  return runSubcommand(argv, usage, (action, rest) =>
    withAccounts(async (accounts) => {
      switch (action) {
        case 'create': {
          const { values, switches } = parseFlags(rest, { values: ['email', 'password', 'display-name'], switches: ['admin'] });
          const user = await accounts.accountService.register(
            {
              email: required(values, 'email'),
              password: await readPassword(values),
              ...(values['display-name'] === undefined ? {} : { display_name: values['display-name'] }),
            },
            switches.has('admin') ? 'admin' : 'user',
          );
          console.log(JSON.stringify(toUserView(user)));
          return 0;
        }
        case 'list': {
          const { values } = parseFlags(rest, { values: ['email', 'role', 'status', 'limit'], switches: [] });
          const role = values.role as 'user' | 'admin' | undefined;
          const status = values.status as 'active' | 'disabled' | undefined;
          if (role !== undefined && !['user', 'admin'].includes(role)) throw new CliError('--role must be user or admin');
          if (status !== undefined && !['active', 'disabled'].includes(status)) throw new CliError('--status must be active or disabled');
          const users = await accounts.users.list({ email: values.email, role, status, limit: Math.min(Number(values.limit ?? 100) || 100, 1000) });
          for (const user of users) console.log(`${user.id}  ${user.role.padEnd(5)}  ${user.status.padEnd(8)}  ${user.email}`);
          return 0;
        }
        case 'set-role':
        case 'disable':
        case 'enable': {
          const { values } = parseFlags(rest, { values: action === 'set-role' ? ['email', 'role'] : ['email'], switches: [] });
          const user = await accounts.users.findByEmail(required(values, 'email').trim());
          if (user === undefined) throw new CliError('No user with that email');
          const role = values.role;
          if (action === 'set-role' && role !== 'user' && role !== 'admin') throw new CliError('--role must be user or admin');
          const change = action === 'set-role' ? { role: role as 'user' | 'admin' } : { status: action === 'disable' ? ('disabled' as const) : ('active' as const) };
          const updated = await accounts.adminService.updateUser({ actorId: 'command-line', userId: user.id, change });
          console.log(JSON.stringify(toUserView(updated)));
          return 0;
        }
        default:
          throw new CliError(`Unknown users action "${action}"\n\n${usage}`);
      }
    }),
  );
}
