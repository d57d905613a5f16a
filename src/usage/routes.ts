// GET /api/me/usage: what the caller used and has left, per window and per model.
// GET /api/admin/usage: usage by user and model over a time range, for operators.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { principalOf, type Authenticator } from '../auth/authenticate.js';
import { GatewayError } from '../errors.js';
import { isUuid } from '../platform/identifiers.js';
import type { LimitsService } from '../limits/limits-service.js';
import type { UsageRepository } from './usage-repository.js';

const security = [{ bearer: [] }];
const windowSchema = Type.Object({ limit: Type.Integer(), used: Type.Integer(), remaining: Type.Integer(), reset_seconds: Type.Integer() });
const totalsSchema = Type.Object({
  model: Type.String(),
  requests: Type.Integer(),
  prompt_tokens: Type.Integer(),
  completion_tokens: Type.Integer(),
  errors: Type.Integer(),
  aborted: Type.Integer(),
});

export const usageRoutes: FastifyPluginAsyncTypebox<{ limits: LimitsService; authenticator: Authenticator; usageRepository: UsageRepository }> = async (app, options) => {
  const { limits, usageRepository } = options;

  app.get(
    '/me/usage',
    {
      onRequest: options.authenticator.requireUser,
      schema: {
        tags: ['usage'],
        summary: 'Requests and tokens used and left, per window and model',
        security,
        response: {
          200: Type.Object({
            requests: Type.Object({ limit: Type.Integer(), remaining: Type.Integer(), window_seconds: Type.Integer(), reset_seconds: Type.Integer() }),
            tokens_per_minute: Type.Union([windowSchema, Type.Null()]),
            tokens_per_day: Type.Union([windowSchema, Type.Null()]),
            max_concurrent_streams: Type.Integer(),
            today: Type.Array(totalsSchema, { description: 'Since 00:00 UTC, by model (written in batches: may lag a second or two)' }),
          }),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const snapshot = await limits.snapshot(principal);
      const window = (limit: number, state: { used: number; resetMs: number }) =>
        limit === 0 ? null : { limit, used: state.used, remaining: Math.max(0, limit - state.used), reset_seconds: Math.ceil(state.resetMs / 1000) };
      const startOfDay = new Date();
      startOfDay.setUTCHours(0, 0, 0, 0);
      const today = await usageRepository.totals({ from: startOfDay, to: new Date(Date.now() + 1000), userId: principal.userId });
      return {
        requests: {
          limit: snapshot.limits.requests,
          remaining: snapshot.requests.remaining,
          window_seconds: snapshot.limits.windowSeconds,
          reset_seconds: Math.ceil(snapshot.requests.resetMs / 1000),
        },
        tokens_per_minute: window(snapshot.limits.tokensPerMinute, snapshot.minute),
        tokens_per_day: window(snapshot.limits.tokensPerDay, snapshot.day),
        max_concurrent_streams: snapshot.limits.maxConcurrentStreams,
        today: today.map(({ user_id: _userId, ...totals }) => totals),
      };
    },
  );

  app.get(
    '/admin/usage',
    {
      onRequest: options.authenticator.requireAdmin,
      schema: {
        tags: ['admin'],
        summary: 'Usage by user and model over a time range (default: the last 24 hours)',
        security,
        querystring: Type.Object(
          { from: Type.Optional(Type.String({ format: 'date-time' })), to: Type.Optional(Type.String({ format: 'date-time' })), user_id: Type.Optional(Type.String({ maxLength: 64 })) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ from: Type.String(), to: Type.String(), data: Type.Array(Type.Object({ user_id: Type.String(), ...totalsSchema.properties })) }) },
      },
    },
    async (request) => {
      const to = request.query.to === undefined ? new Date() : new Date(request.query.to);
      const from = request.query.from === undefined ? new Date(to.getTime() - 86_400_000) : new Date(request.query.from);
      if (from >= to) throw new GatewayError('validation_failed', 'from must be before to', { param: 'from' });
      const userId = request.query.user_id;
      if (userId !== undefined && !isUuid(userId)) throw new GatewayError('validation_failed', 'user_id must be a UUID', { param: 'user_id' });
      const data = await usageRepository.totals({ from, to, userId });
      return { from: from.toISOString(), to: to.toISOString(), data };
    },
  );
};
