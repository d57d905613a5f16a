// SQL for usage events: one insert per batch.
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
      // One parameter per column — every row's values as an array, unnested by PostgreSQL — rather
      // than 14 per row: a batch of hundreds holds the event loop (every open stream) half as long.
      const column = <T>(pick: (event: UsageEvent) => T): T[] => events.map(pick);
      await sql`
        insert into usage_events (created_at, user_id, api_key_id, endpoint, model, stream, status, finish_reason,
          prompt_tokens, completion_tokens, usage_estimated, ttft_ms, duration_ms, request_id)
        select * from unnest(
          ${column((event) => event.createdAt.toISOString())}::timestamptz[],
          ${column((event) => event.userId)}::uuid[],
          ${column((event) => event.apiKeyId)}::uuid[],
          ${column((event) => event.endpoint)}::text[],
          ${column((event) => event.model.slice(0, 256))}::text[],
          ${column((event) => event.stream)}::boolean[],
          ${column((event) => event.status)}::text[],
          ${column((event) => event.finishReason)}::text[],
          ${column((event) => event.promptTokens)}::integer[],
          ${column((event) => event.completionTokens)}::integer[],
          ${column((event) => event.usageEstimated)}::boolean[],
          ${column((event) => event.ttftMs)}::integer[],
          ${column((event) => event.durationMs)}::integer[],
          ${column((event) => event.requestId)}::text[]
        )
      `.execute(db);
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
