// Talks to /api/auth the way a client does, for the auth and admin tests: unique users, register +
// login in one call, bearer headers, and one check for the error envelope every failure must carry.
import { randomBytes, randomUUID } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import type { App } from '../../src/app.js';
import { errorCatalog, type ErrorCode } from '../../src/errors.js';
import { uniqueName } from './environment.js';

export interface UserBody {
  id: string;
  email: string;
  display_name: string | null;
  role: 'user' | 'admin';
  status: 'active' | 'disabled';
  created_at: string;
}

export interface TokenBody {
  access_token: string;
  refresh_token: string;
  token_type: 'bearer';
  expires_in: number;
  user: UserBody;
}

export interface RegisteredUser {
  email: string;
  password: string;
  user: UserBody;
}

export interface SignedInUser extends RegisteredUser {
  tokens: TokenBody;
}

/** Settings every suite that is not about throttling uses, so many logins from 127.0.0.1 stay allowed. */
export const relaxedAuthLimits: Record<string, string> = {
  RATE_LIMIT_AUTH_REQUESTS: '100000',
  RATE_LIMIT_IP_REQUESTS: '100000',
  RATE_LIMIT_REQUESTS: '100000',
};

export const adminCredentials = { email: 'root@example.com', password: 'a-strong-admin-passphrase' } as const;
export const adminEnvironment: Record<string, string> = { ADMIN_EMAIL: adminCredentials.email, ADMIN_PASSWORD: adminCredentials.password };

export const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isoTimestampPattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]00:00)$/;

export function uniqueEmail(label = 'user'): string {
  return `${uniqueName(label)}@example.com`;
}

/** A long random passphrase no common-password list holds. */
export function strongPassword(): string {
  return `violet-harbour-${randomBytes(10).toString('hex')}`;
}

/** A random private address, so a test's logins do not share throttles with any other test. */
export function randomIp(): string {
  const [a = 0, b = 0, c = 0] = randomBytes(3);
  return `10.${a}.${b}.${Math.max(c, 1)}`;
}

export function randomId(): string {
  return randomUUID();
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

export async function register(
  app: App,
  options: { email?: string; password?: string; displayName?: string; remoteAddress?: string } = {},
): Promise<RegisteredUser> {
  const email = options.email ?? uniqueEmail();
  const password = options.password ?? strongPassword();
  const response = await app.inject({
    method: 'POST',
    url: '/api/auth/register',
    payload: { email, password, ...(options.displayName === undefined ? {} : { display_name: options.displayName }) },
    ...(options.remoteAddress === undefined ? {} : { remoteAddress: options.remoteAddress }),
  });
  expect(response.statusCode, response.body).toBe(201);
  return { email, password, user: response.json<UserBody>() };
}

export function loginRequest(
  app: App,
  options: { email: string; password: string; remoteAddress?: string; userAgent?: string },
): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url: '/api/auth/login',
    payload: { email: options.email, password: options.password },
    ...(options.remoteAddress === undefined ? {} : { remoteAddress: options.remoteAddress }),
    ...(options.userAgent === undefined ? {} : { headers: { 'user-agent': options.userAgent } }),
  });
}

export async function login(
  app: App,
  options: { email: string; password: string; remoteAddress?: string; userAgent?: string },
): Promise<TokenBody> {
  const response = await loginRequest(app, options);
  expect(response.statusCode, response.body).toBe(200);
  return response.json<TokenBody>();
}

/** Registers a fresh user and logs in once: the starting point of most tests. */
export async function signUp(
  app: App,
  options: { email?: string; password?: string; displayName?: string; remoteAddress?: string; userAgent?: string } = {},
): Promise<SignedInUser> {
  const registered = await register(app, options);
  const tokens = await login(app, { ...options, email: registered.email, password: registered.password });
  return { ...registered, tokens };
}

export function refreshRequest(app: App, refreshToken: string, remoteAddress?: string): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url: '/api/auth/refresh',
    payload: { refresh_token: refreshToken },
    ...(remoteAddress === undefined ? {} : { remoteAddress }),
  });
}

/** GET /api/auth/me with a bearer credential (access token or API key). */
export function me(app: App, credential: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'GET', url: '/api/auth/me', headers: bearer(credential) });
}

export async function createApiKey(app: App, accessToken: string, name = 'test key'): Promise<{ id: string; key: string; prefix: string }> {
  const response = await app.inject({ method: 'POST', url: '/api/keys', headers: bearer(accessToken), payload: { name } });
  expect(response.statusCode, response.body).toBe(201);
  return response.json<{ id: string; key: string; prefix: string }>();
}

/**
 * Checks an error answer: its status, the envelope with exactly four fields, the code (one of
 * several when the contract allows a choice), the request id, and the Bearer challenge on 401.
 */
export function expectError(response: LightMyRequestResponse, status: number, code: ErrorCode | ErrorCode[]): ErrorEnvelopeBody {
  expect(response.statusCode, response.body).toBe(status);
  const body = response.json<ErrorEnvelopeBody>();
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  const codes = Array.isArray(code) ? code : [code];
  expect(codes).toContain(body.error.code);
  expect(body.error.type).toBe(errorCatalog[body.error.code].type);
  expect(typeof body.error.message).toBe('string');
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(response.headers['x-request-id']).toEqual(expect.any(String));
  if (status === 401) expect(String(response.headers['www-authenticate'])).toMatch(/^Bearer/);
  return body;
}

export interface ErrorEnvelopeBody {
  error: { message: string; type: string; code: ErrorCode; param: string | null };
}

export function expectUserShape(user: UserBody): void {
  expect(Object.keys(user).sort()).toEqual(['created_at', 'display_name', 'email', 'id', 'role', 'status']);
  expect(user.id).toMatch(uuidPattern);
  expect(user.created_at).toMatch(isoTimestampPattern);
  expect(['user', 'admin']).toContain(user.role);
  expect(['active', 'disabled']).toContain(user.status);
}
