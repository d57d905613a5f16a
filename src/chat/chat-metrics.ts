// Metrics of generation requests. Labels are bounded: a model label is a model vLLM serves (or
// `unknown`), never a caller's string; no user, key or IP ever becomes a label.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type RequestOutcome = 'ok' | 'aborted' | 'upstream_error' | 'client_error' | 'timeout';
/** Why a generation ended early; `not_stored`: the chat turn could not be written, so it was never answered. */
export type AbortReason = 'client_disconnect' | 'slow_client' | 'stopped' | 'shutdown' | 'upstream_cut' | 'timeout' | 'malformed_upstream' | 'not_stored';

export function createChatMetrics(registry: Registry) {
  const registers = [registry];
  return {
    requests: new Counter({ name: 'chat_requests_total', help: 'Generation requests by model and outcome.', labelNames: ['model', 'status'], registers }),
    duration: new Histogram({
      name: 'chat_request_duration_seconds',
      help: 'Generation request duration, to the last byte.',
      labelNames: ['model', 'stream'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320],
      registers,
    }),
    timeToFirstToken: new Histogram({
      name: 'chat_time_to_first_token_seconds',
      help: 'Time from the request to the first streamed event.',
      labelNames: ['model'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32],
      registers,
    }),
    interTokenLatency: new Histogram({
      name: 'chat_inter_token_latency_seconds',
      help: 'Time between two streamed events.',
      labelNames: ['model'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28],
      registers,
    }),
    promptTokens: new Counter({ name: 'chat_prompt_tokens_total', help: 'Prompt tokens, as counted by vLLM.', labelNames: ['model'], registers }),
    completionTokens: new Counter({ name: 'chat_completion_tokens_total', help: 'Generated tokens, as counted by vLLM.', labelNames: ['model'], registers }),
    activeStreams: new Gauge({ name: 'chat_active_streams', help: 'Streams open right now.', registers }),
    abortedStreams: new Counter({ name: 'chat_aborted_streams_total', help: 'Streams ended early, by reason.', labelNames: ['reason'], registers }),
    upstreamErrors: new Counter({ name: 'upstream_errors_total', help: 'Failures of calls to vLLM, by kind.', labelNames: ['kind'], registers }),
    usageEventsDropped: new Counter({ name: 'usage_events_dropped_total', help: 'Usage events dropped because the queue was full while PostgreSQL was down.', registers }),
  };
}

export type ChatMetrics = ReturnType<typeof createChatMetrics>;
