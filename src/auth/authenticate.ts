// Who is calling: reads `Authorization: Bearer <access token | API key>`, verifies it (cached JWT
// verification, one store round trip for revocation) and sets request.principal. Route hooks
// `requireUser` and `requireAdmin` run before the body is parsed, so strangers cost little.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError, isGatewayError } from '../errors.js';
import type { AccessTokens } from './access-tokens.js';
import type { AccessState } from './access-state.js';
import { looksLikeApiKey } from './secrets.js';
import type { LimitOverrides } from './users-repository.js';

export type Principal =
  | { kind: 'access_token'; userId: string; role: 'user' | 'admin'; limits: LimitOverrides; sessionId: string; tokenId: string; expiresAt: number }
  | { kind: 'api_key'; userId: string; role: 'user' | 'admin'; limits: LimitOverrides; apiKeyId: string };

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

const bearerPattern = /^Bearer +(\S+) *$/i;

export function createAuthenticator(dependencies: { accessTokens: AccessTokens; accessState: AccessState; onApiKeyUsed: (apiKeyId: string) => void }) {
  const { accessTokens, accessState } = dependencies;

  async function identify(authorization: string | undefined): Promise<Principal> {
    if (authorization === undefined || authorization === '') throw unauthorized('unauthorized', 'Authentication required: send Authorization: Bearer <token>');
    const match = bearerPattern.exec(authorization);
    const credential = match?.[1];
    if (credential === undefined) throw unauthorized('invalid_token', 'Authorization header must be "Bearer <token>"');
    if (looksLikeApiKey(credential)) {
      const granted = await accessState.checkApiKey(credential);
      dependencies.onApiKeyUsed(granted.apiKeyId);
      return { kind: 'api_key', ...granted };
    }
    const claims = await accessTokens.verify(credential);
    const granted = await accessState.checkAccessToken(claims);
    return { kind: 'access_token', userId: granted.userId, role: granted.role, limits: granted.limits, sessionId: claims.sessionId, tokenId: claims.tokenId, expiresAt: claims.expiresAt };
  }

  async function requireUser(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    try {
      request.principal = await identify(request.headers.authorization);
    } catch (error) {
      if (isGatewayError(error) && error.status === 401 && error.headers['www-authenticate'] === undefined) {
        throw unauthorized(error.code, error.message);
      }
      throw error;
    }
  }

  async function requireAdmin(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    await requireUser(request, reply);
    if (request.principal?.role !== 'admin') throw new GatewayError('forbidden', 'Administrator role required');
  }

  return { requireUser, requireAdmin, identify };
}

export type Authenticator = ReturnType<typeof createAuthenticator>;

function unauthorized(code: GatewayError['code'], message: string): GatewayError {
  const error = code === 'token_expired' || code === 'invalid_token' || code === 'invalid_api_key' ? 'invalid_token' : null;
  return new GatewayError(code, message, {
    headers: { 'www-authenticate': error === null ? 'Bearer realm="vllm-chat-gateway"' : `Bearer realm="vllm-chat-gateway", error="${error}"` },
  });
}

/** The principal of a route behind requireUser; a missing one is a wiring bug, not a client error. */
export function principalOf(request: FastifyRequest): Principal {
  if (request.principal === null) throw new Error('route is missing its requireUser hook');
  return request.principal;
}
