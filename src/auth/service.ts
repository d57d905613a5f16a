// Accounts and sessions: register, log in, refresh, log out, change password. Every change that
// must end older tokens writes PostgreSQL first, then tells the shared store (access-state.ts).
import { GatewayError } from '../errors.js';
import type { AccessTokens } from './access-tokens.js';
import type { AccessState } from './access-state.js';
import { isCommonPassword } from './common-passwords.js';
import type { LoginThrottle } from './login-throttle.js';
import { hashPassword, spendPasswordVerificationTime, verifyPassword } from './passwords.js';
import type { RegisterBody, TokenResponse } from './schemas.js';
import { randomSecret, sha256Hex } from './secrets.js';
import type { SessionsRepository } from './sessions-repository.js';
import type { UserRecord, UsersRepository } from './users-repository.js';
import { toUserView } from './views.js';

/** A deliberately plain check: something@something.tld, no spaces. Deliverability is not our concern. */
const emailPattern = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

export interface ClientContext {
  ip: string;
  userAgent: string | null;
}

export function normaliseEmail(email: string): string {
  return email.trim().toLowerCase();
}

export function assertAcceptablePassword(password: string, param: string): void {
  if (isCommonPassword(password)) {
    throw new GatewayError('validation_failed', 'This password is too common; choose another', { param });
  }
}

export function createAccountService(dependencies: {
  users: UsersRepository;
  sessions: SessionsRepository;
  accessTokens: AccessTokens;
  accessState: AccessState;
  loginThrottle: LoginThrottle;
  refreshTtlSeconds: number;
  refreshReuseGraceSeconds: number;
}) {
  const { users, sessions, accessTokens, accessState, loginThrottle } = dependencies;

  async function openSession(user: UserRecord, client: ClientContext): Promise<TokenResponse> {
    const refreshToken = randomSecret(32);
    const session = await sessions.create({
      userId: user.id,
      userAgent: client.userAgent?.slice(0, 512) ?? null,
      ip: client.ip,
      tokenHash: sha256Hex(refreshToken),
      expiresAt: new Date(Date.now() + dependencies.refreshTtlSeconds * 1000),
    });
    return tokenResponse(user, session.id, refreshToken);
  }

  async function tokenResponse(user: UserRecord, sessionId: string, refreshToken: string): Promise<TokenResponse> {
    const access = await accessTokens.issue({ userId: user.id, role: user.role, sessionId, tokenVersion: user.token_version });
    return { access_token: access.token, refresh_token: refreshToken, token_type: 'bearer', expires_in: access.expiresIn, user: toUserView(user) };
  }

  async function endAllSessions(userId: string, reason: string): Promise<void> {
    const revokedSessionIds = await sessions.revokeAllForUser({ userId, reason });
    await accessState.publishChange({ userId, revokedSessionIds });
  }

  return {
    async register(body: RegisterBody, role: 'user' | 'admin' = 'user'): Promise<UserRecord> {
      const email = normaliseEmail(body.email);
      if (!emailPattern.test(email) || email.length > 254) throw new GatewayError('validation_failed', 'email is not a valid address', { param: 'email' });
      assertAcceptablePassword(body.password, 'password');
      const existing = await users.findByEmail(email);
      if (existing !== undefined) throw new GatewayError('conflict', 'An account with this email already exists', { param: 'email' });
      const passwordHash = await hashPassword(body.password);
      const user = await users.insert({ email, displayName: body.display_name?.trim() ?? null, passwordHash, role });
      if (user === undefined) throw new GatewayError('conflict', 'An account with this email already exists', { param: 'email' });
      return user;
    },

    async login(credentials: { email: string; password: string }, client: ClientContext): Promise<TokenResponse> {
      const email = normaliseEmail(credentials.email);
      await loginThrottle.assertAllowed(email, client.ip);
      const user = await users.findByEmail(email);
      const passwordMatches = user === undefined ? await spendPasswordVerificationTime(credentials.password).then(() => false) : await verifyPassword(user.password_hash, credentials.password);
      if (user === undefined || !passwordMatches) {
        await loginThrottle.recordFailure(email, client.ip);
        throw new GatewayError('invalid_credentials', 'Email or password is incorrect');
      }
      if (user.status !== 'active') throw new GatewayError('account_disabled', 'This account is disabled');
      await loginThrottle.recordSuccess(email, client.ip);
      return openSession(user, client);
    },

    async refresh(refreshToken: string): Promise<TokenResponse> {
      const invalid = new GatewayError('invalid_refresh_token', 'Refresh token is invalid, expired or revoked');
      const nextToken = randomSecret(32);
      const outcome = await sessions.rotate({
        tokenHash: sha256Hex(refreshToken),
        newTokenHash: sha256Hex(nextToken),
        expiresAt: new Date(Date.now() + dependencies.refreshTtlSeconds * 1000),
        graceSeconds: dependencies.refreshReuseGraceSeconds,
      });
      if (outcome.kind === 'invalid') throw invalid;
      if (outcome.kind === 'reused') {
        // A rotated token came back: someone holds a copy. The whole login is revoked.
        await accessState.publishChange({ revokedSessionIds: [outcome.sessionId] });
        throw invalid;
      }
      const user = await users.findById(outcome.userId);
      if (user?.status !== 'active') throw invalid;
      return tokenResponse(user, outcome.sessionId, nextToken);
    },

    /** Ends one session: the access token's (when given) and/or the refresh token's. */
    async logout(input: {
      access?: { userId: string; sessionId: string; tokenId: string; expiresAt: number } | undefined;
      refreshToken?: string | undefined;
    }): Promise<void> {
      const sessionsToEnd: Array<{ sessionId: string; userId: string }> = [];
      if (input.access !== undefined) sessionsToEnd.push({ sessionId: input.access.sessionId, userId: input.access.userId });
      if (input.refreshToken !== undefined) {
        const owner = await sessions.findSessionByTokenHash(sha256Hex(input.refreshToken));
        // With an access token, only that user's refresh tokens count; another user's is ignored.
        if (owner !== undefined && (input.access === undefined || owner.userId === input.access.userId)) sessionsToEnd.push(owner);
        else if (input.access === undefined) throw new GatewayError('invalid_refresh_token', 'Refresh token is invalid, expired or revoked');
      }
      for (const session of sessionsToEnd) await sessions.revoke({ ...session, reason: 'logout' });
      await accessState.publishChange({
        ...(input.access === undefined ? {} : { deniedToken: { tokenId: input.access.tokenId, expiresAt: input.access.expiresAt } }),
        revokedSessionIds: sessionsToEnd.map((session) => session.sessionId),
      });
    },

    async logoutAll(userId: string): Promise<void> {
      await users.bumpTokenVersion(userId);
      await endAllSessions(userId, 'logout-all');
    },

    async changePassword(input: { userId: string; currentPassword: string; newPassword: string }): Promise<void> {
      const user = await users.findById(input.userId);
      if (user === undefined) throw new GatewayError('unauthorized', 'Authentication required');
      if (!(await verifyPassword(user.password_hash, input.currentPassword))) {
        throw new GatewayError('invalid_credentials', 'Current password is incorrect', { param: 'current_password' });
      }
      assertAcceptablePassword(input.newPassword, 'new_password');
      await users.updatePassword(user.id, await hashPassword(input.newPassword));
      await endAllSessions(user.id, 'password changed');
    },

    async me(userId: string): Promise<UserRecord> {
      const user = await users.findById(userId);
      if (user === undefined) throw new GatewayError('unauthorized', 'Authentication required');
      return user;
    },

    async listSessions(userId: string) {
      return sessions.listActive(userId);
    },

    async revokeSession(input: { userId: string; sessionId: string }): Promise<void> {
      const revoked = await sessions.revoke({ ...input, reason: 'revoked by user' });
      if (!revoked) throw new GatewayError('not_found', 'Session not found');
      await accessState.publishChange({ revokedSessionIds: [input.sessionId] });
    },

    /** Role or status changed by an admin: older tokens end; disabling also ends every session. */
    async afterAccessChange(input: { userId: string; disabled: boolean }): Promise<void> {
      if (input.disabled) await endAllSessions(input.userId, 'account disabled');
      else await accessState.publishChange({ userId: input.userId });
    },
  };
}

export type AccountService = ReturnType<typeof createAccountService>;
