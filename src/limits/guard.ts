// Runs a generation inside its admission: limits checked (429 when over), headers set, and the
// reservation settled and the concurrency slot freed the moment the generation is over — whether
// it completed, failed or its client left.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Principal } from '../auth/authenticate.js';
import type { TokenUsage } from '../chat/stream-observer.js';
import { estimatePromptTokens } from '../chat/stream-observer.js';
import { GenerationStopped } from '../chat/relay-service.js';
import type { LimitsService } from './limits-service.js';

export async function runAdmitted(input: {
  limits: LimitsService;
  request: FastifyRequest;
  reply: FastifyReply;
  principal: Principal;
  body: Record<string, unknown>;
  defaultReservation: number;
  generate: () => Promise<{ usage: TokenUsage } | null>;
}): Promise<void> {
  const { body } = input;
  const maxTokens = [body.max_tokens, body.max_completion_tokens].find((value): value is number => typeof value === 'number');
  const choices = typeof body.n === 'number' ? body.n : 1;
  const reserveTokens = estimatePromptTokens(body) + (maxTokens ?? input.defaultReservation) * choices;
  const admission = await input.limits.admitGeneration({ principal: input.principal, ip: input.request.ip, reserveTokens });
  input.reply.headers(admission.headers);
  let usage: TokenUsage | null = null;
  try {
    usage = (await input.generate())?.usage ?? null;
  } catch (error) {
    // A stopped generation still spent the prompt (and maybe more): it is charged, not refunded.
    if (error instanceof GenerationStopped) usage = error.result.usage;
    throw error;
  } finally {
    await admission.finish(usage);
  }
}
