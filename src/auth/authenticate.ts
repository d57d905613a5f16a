// Who is calling: reads `Authorization: Bearer <access token | API key>`, verifies it (cached JWT
// verification, one store round trip for revocation) and sets request.principal. Route hooks
// `requireUser` and `requireAdmin` run before the body is parsed, so strangers cost little.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError, isGatewayError } from '../errors.js';
import type { AccessTokens } from './access-tokens.js';
import type { AccessState } from './access-state.js';
import { looksLikeApiKey } from './secrets.js';
import type { LimitOverrides } from './users-repository.js';
import type { StoredValuesPrecondition } from '../platform/admission.js';

export type Principal =
  | { kind: 'access_token'; userId: string; role: 'user' | 'admin'; limits: LimitOverrides; sessionId: string; tokenId: string; expiresAt: number }
  | { kind: 'api_key'; userId: string; role: 'user' | 'admin'; limits: LimitOverrides; apiKeyId: string };

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
    /**
     * Set when the principal came from this process's earlier judgment of the credential: the
     * admission must find these store values unchanged, or call `confirmAccess` (see runAdmitted).
     */
    accessPrecondition: StoredValuesPrecondition | null;
  }
  interface FastifyContextConfig {
    /** The route admits a generation before anything else happens: the credential's state is confirmed by the admission itself. */
    confirmsAccessAtAdmission?: boolean;
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

  /**
   * A principal from an earlier judgment of the same credential, with the store values that must
   * still hold; null when this process has none (or the header is not a plain valid credential).
   */
  async function identifyFromJudgment(authorization: string | undefined): Promise<{ principal: Principal; precondition: StoredValuesPrecondition } | null> {
    const credential = authorization === undefined ? undefined : bearerPattern.exec(authorization)?.[1];
    if (credential === undefined) return null;
    if (looksLikeApiKey(credential)) {
      const judged = accessState.judgedApiKey(credential);
      if (judged?.apiKeyId == null) return null;
      // Its use is recorded once the admission confirms it (judgmentConfirmed).
      return { principal: { kind: 'api_key', ...judged.granted, apiKeyId: judged.apiKeyId }, precondition: judged.precondition };
    }
    const claims = await accessTokens.verify(credential);
    const judged = accessState.judgedAccessToken(claims);
    if (judged === null) return null;
    const { userId, role, limits } = judged.granted;
    return {
      principal: { kind: 'access_token', userId, role, limits, sessionId: claims.sessionId, tokenId: claims.tokenId, expiresAt: claims.expiresAt },
      precondition: judged.precondition,
    };
  }

  async function requireUser(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    try {
      if (request.routeOptions.config.confirmsAccessAtAdmission === true) {
        const fromJudgment = await identifyFromJudgment(request.headers.authorization);
        if (fromJudgment !== null) {
          request.principal = fromJudgment.principal;
          request.accessPrecondition = fromJudgment.precondition;
          return;
        }
      }
      request.principal = await identify(request.headers.authorization);
      request.accessPrecondition = null;
    } catch (error) {
      throw withChallenge(error);
    }
  }

  async function requireAdmin(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    await requireUser(request, reply);
    if (request.principal?.role !== 'admin') throw new GatewayError('forbidden', 'Administrator role required');
  }

  /** The full check again, after an admission found the judged store values changed: a new principal, or 401. */
  async function confirmAccess(request: FastifyRequest): Promise<Principal> {
    request.accessPrecondition = null;
    try {
      request.principal = await identify(request.headers.authorization);
    } catch (error) {
      request.principal = null;
      throw withChallenge(error);
    }
    return request.principal;
  }

  /** The admission found the judged state unchanged: the credential is as good as a full check found it. */
  function judgmentConfirmed(request: FastifyRequest): void {
    request.accessPrecondition = null;
    if (request.principal?.kind === 'api_key') dependencies.onApiKeyUsed(request.principal.apiKeyId);
  }

  return { requireUser, requireAdmin, identify, confirmAccess, judgmentConfirmed };
}

export type Authenticator = ReturnType<typeof createAuthenticator>;

/** A 401 always carries its WWW-Authenticate challenge. */
function withChallenge(error: unknown): unknown {
  if (isGatewayError(error) && error.status === 401 && error.headers['www-authenticate'] === undefined) return unauthorized(error.code, error.message);
  return error;
}

function unauthorized(code: GatewayError['code'], message: string): GatewayError {
  const error = code === 'token_expired' || code === 'invalid_token' || code === 'invalid_api_key' ? 'invalid_token' : null;
  return new GatewayError(code, message, {
    headers: { 'www-authenticate': error === null ? 'Bearer realm="vllm-chat-gateway"' : `Bearer realm="vllm-chat-gateway", error="${error}"` },
  });
}

/** The principal of a route behind requireUser; a missing one is a wiring bug, not a client error. */
export function principalOf(request: FastifyRequest): Principal {
  if (request.principal === null) throw new Error('route is missing its requireUser hook');
  // A judged credential is only as good as the admission that confirms it (runAdmitted).
  if (request.accessPrecondition !== null) throw new Error('the credential is not confirmed yet: admit the request first');
  return request.principal;
}

/** The principal before the admission confirmed it: for runAdmitted alone, which confirms it. */
export function principalToAdmit(request: FastifyRequest): Principal {
  if (request.principal === null) throw new Error('route is missing its requireUser hook');
  return request.principal;
}
