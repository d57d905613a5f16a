// Server-sent events as the gateway writes them: one place for the headers and the few events the
// gateway itself adds to a relayed stream (heartbeat comments, an error, the end).
import type { ErrorEnvelope } from '../errors.js';

/** No buffering by proxies (nginx honours x-accel-buffering), no caching, no compression. */
export const sseHeaders = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
  connection: 'keep-alive',
} as const;

export const doneEvent = Buffer.from('data: [DONE]\n\n');
export const heartbeatEvent = Buffer.from(': keep-alive\n\n');

/** After a stream has started, an error is an event, as vLLM itself sends it; `[DONE]` follows. */
export function errorEvent(envelope: ErrorEnvelope): Buffer {
  return Buffer.from(`data: ${JSON.stringify(envelope)}\n\n`);
}
