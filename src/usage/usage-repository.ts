// SQL for usage events: one multi-row insert per batch.
import { sql } from 'kysely';
import type { Database } from '../platform/database.js';

export interface UsageTotals {
  user_id: string;
  model: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  errors: number;
  aborted: number;
}

export interface UsageEvent {
  createdAt: Date;
  userId: string;
  apiKeyId: string | null;
  endpoint: string;
  model: string;
  stream: boolean;
  status: 'ok' | 'aborted' | 'upstream_error' | 'client_error' | 'timeout';
  finishReason: string | null;
  promptTokens: number;
  completionTokens: number;
  usageEstimated: boolean;
  ttftMs: number | null;
  durationMs: number;
  requestId: string;
}

export function createUsageRepository(db: Database) {
  return {
    async insertMany(events: UsageEvent[]): Promise<void> {
      if (events.length === 0) return;
      await db
        .insertInto('usage_events')
        .values(
          events.map((event) => ({
            created_at: event.createdAt,
            user_id: event.userId,
            api_key_id: event.apiKeyId,
            endpoint: event.endpoint,
            model: event.model.slice(0, 256),
            stream: event.stream,
            status: event.status,
            finish_reason: event.finishReason,
            prompt_tokens: event.promptTokens,
            completion_tokens: event.completionTokens,
            usage_estimated: event.usageEstimated,
            ttft_ms: event.ttftMs,
            duration_ms: event.durationMs,
            request_id: event.requestId,
          })),
        )
        .execute();
    },

    /** Totals by user and model over [from, to), optionally for one user. */
    async totals(input: { from: Date; to: Date; userId?: string | undefined }): Promise<UsageTotals[]> {
      let query = db
        .selectFrom('usage_events')
        .select([
          'user_id',
          'model',
          sql<number>`count(*)::int`.as('requests'),
          sql<number>`coalesce(sum(prompt_tokens), 0)::bigint`.as('prompt_tokens'),
          sql<number>`coalesce(sum(completion_tokens), 0)::bigint`.as('completion_tokens'),
          sql<number>`(count(*) filter (where status in ('upstream_error', 'client_error', 'timeout')))::int`.as('errors'),
          sql<number>`(count(*) filter (where status = 'aborted'))::int`.as('aborted'),
        ])
        .where('created_at', '>=', input.from)
        .where('created_at', '<', input.to);
      if (input.userId !== undefined) query = query.where('user_id', '=', input.userId);
      return query.groupBy(['user_id', 'model']).orderBy('user_id').orderBy('model').limit(10_000).execute();
    },
  };
}

export type UsageRepository = ReturnType<typeof createUsageRepository>;
