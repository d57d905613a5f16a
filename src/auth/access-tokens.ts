// Access tokens: short-lived JWTs (RFC 9068 `typ: at+jwt`) signed with the configured HMAC
// algorithm, verified with that algorithm only. Verified tokens are cached until they expire,
// because a verification costs tens of microseconds and the same token arrives on every request.
import { randomUUID } from 'node:crypto';
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';
import { GatewayError } from '../errors.js';
import { BoundedMap } from '../platform/bounded-map.js';
import type { Config } from '../config.js';

export const accessTokenType = 'at+jwt';
export const tokenIssuer = 'vllm-chat-gateway';
export const tokenAudience = 'vllm-chat-gateway';
const clockToleranceSeconds = 30;
/** Far above any token we issue (~400 bytes); refusing longer ones bounds the work per request. */
const maximumTokenLength = 4096;
const cacheLimit = 10_000;
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface AccessTokenClaims {
  userId: string;
  role: 'user' | 'admin';
  tokenId: string;
  sessionId: string;
  tokenVersion: number;
  /** Seconds since the epoch. */
  expiresAt: number;
}

export function createAccessTokens(options: { jwt: Config['jwt'] }) {
  const { algorithm, accessTtlSeconds } = options.jwt;
  if (options.jwt.secret === null) throw new Error('JWT secret not resolved');
  const key = new TextEncoder().encode(options.jwt.secret);
  // During a rotation, tokens signed with the previous secret stay valid until they expire.
  const previousKey = options.jwt.previousSecret === null ? null : new TextEncoder().encode(options.jwt.previousSecret);
  const verified = new BoundedMap<string, AccessTokenClaims>(cacheLimit);
  const verifyOptions = {
    algorithms: [algorithm],
    issuer: tokenIssuer,
    audience: tokenAudience,
    typ: accessTokenType,
    clockTolerance: clockToleranceSeconds,
    requiredClaims: ['sub', 'jti', 'exp', 'iat'],
  };

  async function verifySignature(token: string) {
    try {
      return await jwtVerify(token, key, verifyOptions);
    } catch (error) {
      if (previousKey !== null && error instanceof joseErrors.JWSSignatureVerificationFailed) return jwtVerify(token, previousKey, verifyOptions);
      throw error;
    }
  }

  async function issue(subject: { userId: string; role: 'user' | 'admin'; sessionId: string; tokenVersion: number }) {
    const tokenId = randomUUID();
    const issuedAt = Math.floor(Date.now() / 1000);
    const expiresAt = issuedAt + accessTtlSeconds;
    const token = await new SignJWT({ role: subject.role, sid: subject.sessionId, ver: subject.tokenVersion })
      .setProtectedHeader({ alg: algorithm, typ: accessTokenType })
      .setSubject(subject.userId)
      .setJti(tokenId)
      .setIssuer(tokenIssuer)
      .setAudience(tokenAudience)
      .setIssuedAt(issuedAt)
      .setExpirationTime(expiresAt)
      .sign(key);
    return { token, tokenId, expiresAt, expiresIn: accessTtlSeconds };
  }

  async function verify(token: string): Promise<AccessTokenClaims> {
    const cached = verified.get(token);
    const nowSeconds = Date.now() / 1000;
    if (cached !== undefined) {
      if (cached.expiresAt + clockToleranceSeconds > nowSeconds) return cached;
      verified.delete(token);
    }
    if (token.length > maximumTokenLength) throw invalidToken('Token is too long');
    let payload;
    try {
      ({ payload } = await verifySignature(token));
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw new GatewayError('token_expired', 'Access token has expired; refresh it');
      throw invalidToken('Access token is invalid');
    }
    const { sub, jti, exp, role, sid, ver } = payload;
    if (
      typeof sub !== 'string' || !uuidPattern.test(sub) ||
      typeof jti !== 'string' || typeof exp !== 'number' ||
      (role !== 'user' && role !== 'admin') ||
      typeof sid !== 'string' || !uuidPattern.test(sid) ||
      typeof ver !== 'number' || !Number.isInteger(ver)
    ) {
      throw invalidToken('Access token is invalid');
    }
    const claims: AccessTokenClaims = { userId: sub, role, tokenId: jti, sessionId: sid, tokenVersion: ver, expiresAt: exp };
    verified.set(token, claims);
    return claims;
  }

  return { issue, verify };
}

export type AccessTokens = ReturnType<typeof createAccessTokens>;

function invalidToken(message: string): GatewayError {
  return new GatewayError('invalid_token', message);
}
