// Pumps one vLLM stream to one client: upstream bytes are cut into events (sse-framer), read on the
// side (stream-observer) and written as they came, with heartbeats while vLLM is quiet, the
// client's pace respected up to a deadline, and a stream that never just stops: every failure after
// the start becomes an error event followed by `[DONE]`.
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { GatewayError } from '../errors.js';
import type { UpstreamBody } from '../upstream/upstream-body.js';
import { classifyTransportError, UpstreamFailure } from '../upstream/upstream-failure.js';
import { SseFramer } from './sse-framer.js';
import { doneEvent, errorEvent, heartbeatEvent } from './sse.js';
import type { StreamObserver } from './stream-observer.js';

/** Why the gateway itself ended a generation: the user pressed stop, or the gateway is shutting down. */
export type StopReason = 'user' | 'shutdown';

export type StreamEnding =
  | { outcome: 'complete' }
  | { outcome: 'stopped'; reason: StopReason }
  | { outcome: 'upstream_error_event' }
  | { outcome: 'client_disconnect' }
  | { outcome: 'slow_client' }
  | { outcome: 'upstream_failure'; failure: UpstreamFailure };

export interface StreamRelayOptions {
  upstream: UpstreamBody;
  response: ServerResponse;
  headers: OutgoingHttpHeaders;
  observer: StreamObserver;
  /** False when the gateway asked vLLM for usage on the caller's behalf: the usage-only chunk is dropped. */
  forwardUsageChunk: boolean;
  heartbeatMs: number;
  slowClientTimeoutMs: number;
  /** Events the gateway sends before vLLM's, e.g. /api/chat's `event: conversation`. */
  leadingEvents?: Buffer[];
  clientGone: () => boolean;
  /** Set once a stop was requested; the upstream request is aborted by the caller. */
  stopRequested: () => StopReason | null;
  abortUpstream: (reason: string) => void;
  /** Called for each data event vLLM sent, with the time it arrived. */
  onDataEvent: (arrivedAt: number) => void;
  /** Runs when vLLM's `[DONE]` arrived, before it is passed on: a stored answer is saved before the client learns it is over. */
  beforeDone?: () => Promise<void>;
}

export async function relayStream(options: StreamRelayOptions): Promise<StreamEnding> {
  const { response, observer } = options;
  response.writeHead(200, options.headers);
  for (const event of options.leadingEvents ?? []) response.write(event);
  response.flushHeaders();

  let lastWriteAt = Date.now();
  const heartbeat = setInterval(() => {
    if (Date.now() - lastWriteAt >= options.heartbeatMs && !response.writableEnded) {
      response.write(heartbeatEvent);
      lastWriteAt = Date.now();
    }
  }, Math.max(10, Math.floor(options.heartbeatMs / 2)));

  const framer = new SseFramer();
  let sawDone = false;
  let doneBytes: Buffer = doneEvent;

  const finishWithError = (failure: GatewayError): void => {
    if (response.writableEnded || response.destroyed) return;
    response.write(errorEvent(failure.toEnvelope()));
    response.end(doneEvent);
  };

  /** A stop ends the stream cleanly for the user who asked; shutdown tells the client why. */
  const finishStopped = (reason: StopReason): StreamEnding => {
    if (reason === 'shutdown') finishWithError(new GatewayError('service_unavailable', 'The gateway is shutting down; the answer so far was saved'));
    else if (!response.writableEnded && !response.destroyed) response.end(doneEvent);
    return { outcome: 'stopped', reason };
  };

  try {
    for await (const chunk of options.upstream) {
      if (options.clientGone()) return { outcome: 'client_disconnect' };
      const stop = options.stopRequested();
      if (stop !== null) return finishStopped(stop);
      const arrivedAt = Date.now();
      const outgoing: Buffer[] = [];
      for (const event of framer.push(chunk)) {
        const kind = observer.inspect(event);
        if (kind === 'malformed') {
          // Forwarding it would break the client's parser; what came before stays delivered.
          writeAll(response, outgoing);
          options.abortUpstream('malformed upstream event');
          const failure = new UpstreamFailure('malformed', new GatewayError('upstream_error', 'vLLM sent a malformed event; the stream was ended'));
          finishWithError(failure);
          return { outcome: 'upstream_failure', failure };
        }
        if (kind === 'data' || kind === 'usage_only') options.onDataEvent(arrivedAt);
        if (kind === 'usage_only' && !options.forwardUsageChunk) continue;
        if (kind === 'done') {
          // Held back until the end, so beforeDone runs first; then sent exactly as vLLM wrote it.
          sawDone = true;
          doneBytes = event;
          // What follows is the body's end: read it when the loop leaves, so the connection is kept.
          options.upstream.endExpected();
          continue;
        }
        outgoing.push(event);
      }
      if (outgoing.length === 0) {
        if (sawDone) break;
        continue;
      }
      lastWriteAt = arrivedAt;
      if (!writeAll(response, outgoing) && !(await drained(response, options.slowClientTimeoutMs))) {
        if (options.clientGone()) return { outcome: 'client_disconnect' };
        options.abortUpstream('slow client');
        response.destroy();
        return { outcome: 'slow_client' };
      }
      if (sawDone) break;
    }
  } catch (error) {
    if (options.clientGone()) return { outcome: 'client_disconnect' };
    const stop = options.stopRequested();
    if (stop !== null) return finishStopped(stop);
    const failure = error instanceof UpstreamFailure ? error : classifyTransportError(error);
    finishWithError(failure);
    return { outcome: 'upstream_failure', failure };
  } finally {
    clearInterval(heartbeat);
  }

  if (options.clientGone()) return { outcome: 'client_disconnect' };
  const stop = options.stopRequested();
  if (stop !== null && !sawDone) return finishStopped(stop);
  if (!sawDone) {
    const failure = new UpstreamFailure('reset', new GatewayError('upstream_unavailable', 'vLLM ended the stream before it was complete'));
    finishWithError(failure);
    return { outcome: 'upstream_failure', failure };
  }
  await options.beforeDone?.();
  response.end(doneBytes);
  return observer.upstreamError === null ? { outcome: 'complete' } : { outcome: 'upstream_error_event' };
}

function writeAll(response: ServerResponse, events: Buffer[]): boolean {
  if (events.length === 0 || response.destroyed) return true;
  return response.write(events.length === 1 ? events[0] : Buffer.concat(events));
}

/** Resolves true when the client drained its buffer, false when it left or did not within the deadline. */
function drained(response: ServerResponse, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const finish = (result: boolean) => {
      clearTimeout(timer);
      response.off('drain', onDrain);
      response.off('close', onClose);
      resolve(result);
    };
    const onDrain = () => finish(true);
    const onClose = () => finish(false);
    const timer = setTimeout(() => finish(false), timeoutMs);
    response.once('drain', onDrain);
    response.once('close', onClose);
  });
}
