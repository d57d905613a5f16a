// Runs a generation inside its admission: limits checked (429 when over), headers set, and the
// reservation settled and the concurrency slot freed the moment the generation is over — whether
// it completed, failed or its client left.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { principalToAdmit, type Authenticator, type Principal } from '../auth/authenticate.js';
import type { TokenUsage } from '../chat/stream-observer.js';
import { estimatePromptTokens } from '../chat/stream-observer.js';
import { GenerationStopped } from '../chat/relay-service.js';
import type { LimitsService } from './limits-service.js';

export async function runAdmitted(input: {
  limits: LimitsService;
  request: FastifyRequest;
  reply: FastifyReply;
  body: Record<string, unknown>;
  defaultReservation: number;
  /** Confirms the caller's credential: in full when its judged state changed, or as the admission found it. */
  authenticator: Pick<Authenticator, 'confirmAccess' | 'judgmentConfirmed'>;
  generate: (principal: Principal) => Promise<{ usage: TokenUsage } | null>;
}): Promise<void> {
  const { body, request } = input;
  const maxTokens = [body.max_tokens, body.max_completion_tokens].find((value): value is number => typeof value === 'number');
  const choices = typeof body.n === 'number' ? body.n : 1;
  const reserveTokens = estimatePromptTokens(body) + (maxTokens ?? input.defaultReservation) * choices;
  let principal = principalToAdmit(request);
  // The credential's state rides on the admission (one round trip) when this process judged it before.
  const precondition = request.accessPrecondition;
  let admission = await input.limits.admitGeneration({ principal, ip: request.ip, reserveTokens, precondition });
  if (admission !== null && precondition !== null) input.authenticator.judgmentConfirmed(request);
  if (admission === null) {
    // It changed since (logout, revocation, a new role or limits): judge it again — 401 if it is
    // no longer good — and admit under what it is now.
    principal = await input.authenticator.confirmAccess(request);
    admission = await input.limits.admitGeneration({ principal, ip: request.ip, reserveTokens, precondition: null });
    if (admission === null) throw new Error('an admission without precondition cannot fail one');
  }
  input.reply.headers(admission.headers);
  let usage: TokenUsage | null = null;
  try {
    usage = (await input.generate(principal))?.usage ?? null;
  } catch (error) {
    // A stopped generation still spent the prompt (and maybe more): it is charged, not refunded.
    if (error instanceof GenerationStopped) usage = error.result.usage;
    throw error;
  } finally {
    await admission.finish(usage);
  }
}
