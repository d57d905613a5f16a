// SQL for usage events: one multi-row insert per batch.
import type { Database } from '../platform/database.js';

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
  };
}

export type UsageRepository = ReturnType<typeof createUsageRepository>;
