// Runs a generation inside its admission: limits checked (429 when over), headers set, and the
// reservation settled and the concurrency slot freed the moment the generation is over — whether
// it completed, failed or its client left. For a caller far from its limits, the admission runs
// beside vLLM's start instead of before it (admission-headroom.ts says when): nothing reaches the
// client before it is granted, and a refusal aborts vLLM's request and is the answer.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { principalToAdmit, type Authenticator, type Principal } from '../auth/authenticate.js';
import type { TokenUsage } from '../chat/stream-observer.js';
import { estimatePromptTokens } from '../chat/stream-observer.js';
import { GenerationStopped } from '../chat/generation-stopped.js';
import type { Admission, LimitsService } from './limits-service.js';

type GenerationResult = { usage: TokenUsage } | null;

/** The admission found the caller's credential changed since it was judged: it must be judged again. */
class AccessChanged extends Error {
  constructor() {
    super('the credential changed since it was judged');
  }
}

export async function runAdmitted(input: {
  limits: LimitsService;
  request: FastifyRequest;
  reply: FastifyReply;
  body: Record<string, unknown>;
  defaultReservation: number;
  /** Confirms the caller's credential: in full when its judged state changed, or as the admission found it. */
  authenticator: Pick<Authenticator, 'confirmAccess' | 'judgmentConfirmed'>;
  generate: (principal: Principal) => Promise<GenerationResult>;
  /**
   * The same generation, started before its admission is granted: it must send nothing to the
   * client, and store nothing, until `admitted` resolves, and abort vLLM's request when it rejects
   * (with the error to answer). Without it the admission always runs first.
   */
  generateBeside?: (principal: Principal, admitted: Promise<unknown>) => Promise<GenerationResult>;
}): Promise<void> {
  const { body, request, limits } = input;
  const maxTokens = [body.max_tokens, body.max_completion_tokens].find((value): value is number => typeof value === 'number');
  const choices = typeof body.n === 'number' ? body.n : 1;
  const reserveTokens = estimatePromptTokens(body) + (maxTokens ?? input.defaultReservation) * choices;
  let principal = principalToAdmit(request);
  // The credential's state rides on the admission (one round trip) when this process judged it before.
  const precondition = request.accessPrecondition;
  const admit = (who: Principal, withPrecondition: typeof precondition, onRefused?: () => void) =>
    limits.admitGeneration({ principal: who, ip: request.ip, reserveTokens, precondition: withPrecondition, ...(onRefused === undefined ? {} : { onRefused }) });

  let accessChanged = false;
  // A credential state that may lapse from the store before the admission reads it would fail the
  // precondition: only one judged in full on this request, or from values surely still there.
  const credentialHolds = precondition === null || Date.now() < request.accessFreshUntil;
  if (input.generateBeside !== undefined && credentialHolds && limits.mayAdmitBeside({ principal, ip: request.ip, reserveTokens })) {
    const generateBeside = input.generateBeside;
    // Settles with the admission, or fails the moment Redis refuses: before the refusal's headers
    // are read (one more round trip), so vLLM's request is aborted as early as it can be.
    let decide = { grant: (_admission: Admission) => {}, refuse: (_reason: unknown) => {} };
    const decided = new Promise<Admission>((grant, refuse) => {
      decide = { grant, refuse };
    });
    decided.catch(() => undefined);
    const granted = admit(principal, precondition, () => decide.refuse(new Error('the admission was refused'))).then(
      (admission) => {
        limits.countOverlapped(admission === null ? 'access_changed' : 'admitted');
        if (admission === null) throw new AccessChanged();
        if (precondition !== null) input.authenticator.judgmentConfirmed(request);
        input.reply.headers(admission.headers);
        return admission;
      },
      (refusal: unknown) => {
        limits.countOverlapped('refused');
        throw refusal;
      },
    );
    granted.then(decide.grant, decide.refuse);
    const failure = await generateWithin(granted, () => generateBeside(principal, decided)).then(
      () => null,
      (error: unknown) => ({ error }),
    );
    const refusal = await granted.then(
      () => null,
      (refused: unknown) => refused,
    );
    // Returned: answered, or its client left (then nothing is tried again).
    if (failure === null) return;
    // A refusal is the answer even when the aborted call to vLLM failed first.
    if (!(refusal instanceof AccessChanged)) throw refusal ?? failure.error;
    // Its credential changed (logout, revocation, a new role or limits): judged again below, and
    // this time admitted before anything starts.
    accessChanged = true;
  }

  let admission = accessChanged ? null : await admit(principal, precondition);
  if (admission !== null && precondition !== null) input.authenticator.judgmentConfirmed(request);
  if (admission === null) {
    // It changed since (logout, revocation, a new role or limits): judge it again — 401 if it is
    // no longer good — and admit under what it is now.
    principal = await input.authenticator.confirmAccess(request);
    admission = await admit(principal, null);
    if (admission === null) throw new Error('an admission without precondition cannot fail one');
  }
  input.reply.headers(admission.headers);
  await generateWithin(Promise.resolve(admission), () => input.generate(principal));
}

/** Runs the generation, then settles its admission (if granted) with what it used, however it ended. */
async function generateWithin(admission: Promise<Admission>, generate: () => Promise<GenerationResult>): Promise<void> {
  let usage: TokenUsage | null = null;
  try {
    usage = (await generate())?.usage ?? null;
  } catch (error) {
    // A stopped generation still spent the prompt (and maybe more): it is charged, not refunded.
    if (error instanceof GenerationStopped) usage = error.result.usage;
    throw error;
  } finally {
    const granted = await admission.catch(() => null);
    await granted?.finish(usage);
  }
}
