// Access tokens under attack: the claims a real token carries, then forged, tampered, expired and
// malformed tokens on GET /api/auth/me. Each must be a 401 with the envelope, never a 500 or a 200.
import { randomBytes, randomUUID } from 'node:crypto';
import { SignJWT, decodeJwt, decodeProtectedHeader, type JWTHeaderParameters, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ErrorCode } from '../../src/errors.js';
import { backends } from '../helpers/environment.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';
import { bearer, expectError, login, me, relaxedAuthLimits, signUp, uuidPattern, type SignedInUser, type UserBody } from '../helpers/auth-client.js';

const issuer = 'vllm-chat-gateway';
const audience = 'vllm-chat-gateway';
const accessTokenType = 'at+jwt';

interface AccessClaims extends JWTPayload {
  sub: string;
  role: string;
  jti: string;
  sid: string;
  ver: unknown;
  iat: number;
  exp: number;
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

describe.each(backends)('access tokens (%s)', (backend) => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await createTestApp({ backend, environment: relaxedAuthLimits });
  });

  afterAll(async () => {
    await testApp.close();
  });

  function secretKey(): Uint8Array {
    const secret = testApp.config.jwt.secret;
    if (secret === null) throw new Error('the test app has no JWT secret');
    return new TextEncoder().encode(secret);
  }

  /** Signs claims the way the gateway does, unless told to change the algorithm, type or key. */
  async function sign(options: { claims: JWTPayload; algorithm?: string; type?: string | null; key?: Uint8Array }): Promise<string> {
    const header: JWTHeaderParameters = { alg: options.algorithm ?? testApp.config.jwt.algorithm };
    const type = options.type === undefined ? accessTokenType : options.type;
    if (type !== null) header.typ = type;
    return new SignJWT(options.claims).setProtectedHeader(header).sign(options.key ?? secretKey());
  }

  /** A fresh user and the claims of their real access token, re-dated to now with a new jti. */
  async function freshClaims(): Promise<{ signedIn: SignedInUser; claims: AccessClaims }> {
    const signedIn = await signUp(testApp.app);
    const original = decodeJwt<AccessClaims>(signedIn.tokens.access_token);
    const now = nowSeconds();
    return { signedIn, claims: { ...original, jti: randomUUID(), iat: now, exp: now + 300 } };
  }

  it('issues access tokens with the documented header and claims', async () => {
    const signedIn = await signUp(testApp.app);
    const header = decodeProtectedHeader(signedIn.tokens.access_token);
    expect(header.alg).toBe(testApp.config.jwt.algorithm);
    expect(header.typ).toBe(accessTokenType);
    const claims = decodeJwt(signedIn.tokens.access_token);
    expect(claims.sub).toBe(signedIn.user.id);
    expect(claims.role).toBe('user');
    expect(claims.iss).toBe(issuer);
    expect([claims.aud].flat()).toContain(audience);
    expect(claims.jti).toEqual(expect.any(String));
    expect(claims.sid).toMatch(uuidPattern);
    expect(claims.ver).toBeDefined();
    expect(claims.exp! - claims.iat!).toBeGreaterThanOrEqual(signedIn.tokens.expires_in - 1);
    expect(claims.exp! - claims.iat!).toBeLessThanOrEqual(signedIn.tokens.expires_in + 1);
    expect(JSON.stringify(claims)).not.toContain(signedIn.password);
  });

  it('accepts a token signed with the right key and claims (the control for every attack below)', async () => {
    const { signedIn, claims } = await freshClaims();
    const response = await me(testApp.app, await sign({ claims }));
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json<UserBody>().id).toBe(signedIn.user.id);
  });

  it('accepts a token expired by less than the 30 s leeway', async () => {
    const { signedIn, claims } = await freshClaims();
    const now = nowSeconds();
    const response = await me(testApp.app, await sign({ claims: { ...claims, iat: now - 300, exp: now - 5 } }));
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json<UserBody>().id).toBe(signedIn.user.id);
  });

  type AttackContext = { claims: AccessClaims; signedIn: SignedInUser };
  const attacks: Array<[string, (context: AttackContext) => Promise<string> | string, ErrorCode]> = [
    ['alg "none" with an empty signature', ({ claims }) => `${base64url({ alg: 'none', typ: accessTokenType })}.${base64url(claims)}.`, 'invalid_token'],
    ['alg "none" keeping a real signature', ({ claims, signedIn }) => `${base64url({ alg: 'none', typ: accessTokenType })}.${base64url(claims)}.${signedIn.tokens.access_token.split('.')[2]}`, 'invalid_token'],
    ['another HMAC algorithm than the pinned one, with the right secret', ({ claims }) => sign({ claims, algorithm: testApp.config.jwt.algorithm === 'HS512' ? 'HS256' : 'HS512' }), 'invalid_token'],
    ['another secret', ({ claims }) => sign({ claims, key: randomBytes(32) }), 'invalid_token'],
    [
      'a payload flipped to role admin under the original signature',
      ({ signedIn }) => {
        const [header, payload, signature] = signedIn.tokens.access_token.split('.');
        const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8')) as JWTPayload;
        return `${header}.${base64url({ ...claims, role: 'admin' })}.${signature}`;
      },
      'invalid_token',
    ],
    ['an exp beyond the leeway', ({ claims }) => sign({ claims: { ...claims, iat: nowSeconds() - 1200, exp: nowSeconds() - 120 } }), 'token_expired'],
    ['an nbf one hour ahead', ({ claims }) => sign({ claims: { ...claims, nbf: nowSeconds() + 3600 } }), 'invalid_token'],
    ['a wrong issuer', ({ claims }) => sign({ claims: { ...claims, iss: 'someone-else' } }), 'invalid_token'],
    ['a wrong audience', ({ claims }) => sign({ claims: { ...claims, aud: 'another-service' } }), 'invalid_token'],
    ['typ "JWT"', ({ claims }) => sign({ claims, type: 'JWT' }), 'invalid_token'],
    ['no typ', ({ claims }) => sign({ claims, type: null }), 'invalid_token'],
    ['a user that does not exist', ({ claims }) => sign({ claims: { ...claims, sub: randomUUID() } }), 'invalid_token'],
    ['a refresh token', ({ signedIn }) => signedIn.tokens.refresh_token, 'invalid_token'],
    ['a 100 KB token', () => `${base64url({ alg: 'HS256', typ: accessTokenType })}.${'A'.repeat(100 * 1024)}.${'B'.repeat(43)}`, 'invalid_token'],
    ['three dots of nothing', () => '..', 'invalid_token'],
  ];

  it.each(attacks)('refuses %s with 401', async (_name, build, code) => {
    const context = await freshClaims();
    const token = await build(context);
    const response = await me(testApp.app, token);
    expectError(response, 401, code);
    // The same user's real token still works: the refusal is about the token, not the account.
    const real = await me(testApp.app, context.signedIn.tokens.access_token);
    expect(real.statusCode, real.body).toBe(200);
  });

  it('does not let a tampered role reach the admin routes', async () => {
    const { signedIn } = await freshClaims();
    const [header, payload, signature] = signedIn.tokens.access_token.split('.');
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8')) as JWTPayload;
    const tampered = `${header}.${base64url({ ...claims, role: 'admin' })}.${signature}`;
    const response = await testApp.app.inject({ method: 'GET', url: '/api/admin/users', headers: bearer(tampered) });
    expectError(response, 401, 'invalid_token');
  });

  it.each([
    ['"Bearer" alone', 'Bearer'],
    ['"Bearer" and two spaces', 'Bearer  '],
    ['Basic credentials', 'Basic dXNlcjpwYXNz'],
    ['a lower-case scheme with a junk token', 'bearer x.y.z'],
    ['another scheme', 'Token abc'],
    ['an empty header', ''],
  ])('refuses an Authorization header of %s with 401', async (_name, authorization) => {
    const response = await testApp.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization } });
    expectError(response, 401, ['unauthorized', 'invalid_token']);
  });

  it('refuses a header holding only the token, without a scheme', async () => {
    const signedIn = await signUp(testApp.app);
    const response = await testApp.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: signedIn.tokens.access_token } });
    expectError(response, 401, ['unauthorized', 'invalid_token']);
  });

  it('refuses a correctly signed token whose version predates logout-all', async () => {
    const signedIn = await signUp(testApp.app);
    const before = decodeJwt<AccessClaims>(signedIn.tokens.access_token);
    const logoutAll = await testApp.app.inject({ method: 'POST', url: '/api/auth/logout-all', headers: bearer(signedIn.tokens.access_token) });
    expect(logoutAll.statusCode, logoutAll.body).toBe(204);

    const again = await login(testApp.app, { email: signedIn.email, password: signedIn.password });
    const after = decodeJwt<AccessClaims>(again.access_token);
    expect(after.ver).not.toEqual(before.ver);
    const now = nowSeconds();
    const current = { ...after, jti: randomUUID(), iat: now, exp: now + 300 };

    // Control: the new session's claims, re-signed, are accepted.
    const control = await me(testApp.app, await sign({ claims: current }));
    expect(control.statusCode, control.body).toBe(200);
    // The same claims with the version from before logout-all are not.
    const stale = await me(testApp.app, await sign({ claims: { ...current, ver: before.ver } }));
    expectError(stale, 401, 'invalid_token');
  });
});
