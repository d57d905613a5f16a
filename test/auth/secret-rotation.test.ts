// Rotating JWT_SECRET without logging everyone out: with the old secret in JWT_SECRET_PREVIOUS,
// tokens it signed keep working until they expire; new tokens are signed with the new secret.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasRealServices } from '../helpers/environment.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';
import { me, signUp } from '../helpers/auth-client.js';

describe.skipIf(!hasRealServices)('JWT secret rotation (real)', () => {
  let before: TestApp;
  let during: TestApp;
  let after: TestApp;
  const oldSecret = randomBytes(32).toString('hex');
  const newSecret = randomBytes(32).toString('hex');

  beforeAll(async () => {
    before = await createTestApp({ backend: 'real', environment: { JWT_SECRET: oldSecret } });
    during = await createTestApp({ backend: 'real', sharing: before, environment: { JWT_SECRET: newSecret, JWT_SECRET_PREVIOUS: oldSecret } });
    after = await createTestApp({ backend: 'real', sharing: before, environment: { JWT_SECRET: newSecret } });
  });

  afterAll(async () => {
    await after.close();
    await during.close();
    await before.close();
  });

  it('accepts tokens signed with the previous secret and signs new ones with the new secret', async () => {
    const oldUser = await signUp(before.app);
    expect((await me(during.app, oldUser.tokens.access_token)).statusCode).toBe(200);
    // Once the previous secret is dropped, the old token is refused: the grace period really ends.
    expect((await me(after.app, oldUser.tokens.access_token)).statusCode).toBe(401);

    const newUser = await signUp(during.app);
    expect((await me(after.app, newUser.tokens.access_token)).statusCode).toBe(200);
    expect((await me(before.app, newUser.tokens.access_token)).statusCode).toBe(401);
  });

  it('keeps refresh tokens working across the rotation (they are not signed)', async () => {
    const user = await signUp(before.app);
    const refreshed = await after.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token: user.tokens.refresh_token } });
    expect(refreshed.statusCode, refreshed.body).toBe(200);
    expect((await me(after.app, refreshed.json<{ access_token: string }>().access_token)).statusCode).toBe(200);
  });
});
