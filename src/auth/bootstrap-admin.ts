// ADMIN_EMAIL / ADMIN_PASSWORD: the first administrator, created at start when none exists.
// An existing account with that email is never promoted: whoever registered it first is not
// necessarily the operator.
import type { Logger } from 'pino';
import { GatewayError } from '../errors.js';
import type { AccountService } from './service.js';
import type { UsersRepository } from './users-repository.js';

export async function ensureBootstrapAdmin(options: {
  admin: { email: string; password: string } | null;
  users: UsersRepository;
  accountService: AccountService;
  logger: Logger;
}): Promise<void> {
  if (options.admin === null || (await options.users.hasAdmin())) return;
  try {
    const user = await options.accountService.register({ email: options.admin.email, password: options.admin.password }, 'admin');
    options.logger.info({ user_id: user.id, email: user.email }, 'first administrator created from ADMIN_EMAIL');
  } catch (error) {
    if (error instanceof GatewayError && error.code === 'conflict') {
      options.logger.error({ email: options.admin.email }, 'ADMIN_EMAIL belongs to an existing non-admin account: not promoted; use `npm run cli -- users set-role`');
      return;
    }
    throw error;
  }
}
