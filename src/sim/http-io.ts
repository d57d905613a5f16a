// The few HTTP helpers the handlers share: reading a body, answering JSON or an error, SSE headers,
// and noticing when the client has gone.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { renderError, type SimulatorError } from './errors.js';
import type { ErrorFormat } from './options.js';

/** Exactly what vLLM (Starlette's StreamingResponse) sends for a stream. */
export const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8' } as const;

const MAX_BODY_BYTES = 64 * 1024 * 1024;

export type BodyReadResult = { ok: true; text: string } | { ok: false; reason: 'too-large' | 'closed' };

export function readBody(request: IncomingMessage): Promise<BodyReadResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    request.on('end', () => {
      if (size > MAX_BODY_BYTES) resolve({ ok: false, reason: 'too-large' });
      else resolve({ ok: true, text: Buffer.concat(chunks).toString('utf8') });
    });
    request.on('error', () => resolve({ ok: false, reason: 'closed' }));
    request.on('close', () => resolve({ ok: false, reason: 'closed' }));
  });
}

export function sendJson(response: ServerResponse, status: number, body: string): void {
  if (response.headersSent || response.destroyed) return;
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  response.end(body);
}

export function sendError(response: ServerResponse, error: SimulatorError, format: ErrorFormat): void {
  sendJson(response, error.status, renderError(error, format));
}

export function sendEmpty(response: ServerResponse, status: number): void {
  if (response.headersSent || response.destroyed) return;
  response.writeHead(status, { 'content-length': 0 });
  response.end();
}

/** Tracks whether the client went away before the response finished (socket closed under us). */
export interface ClientConnection {
  readonly gone: boolean;
  /** Sets the one listener called when the client goes (replacing an earlier one). */
  onGone(listener: () => void): void;
}

export function watchClient(response: ServerResponse): ClientConnection {
  let gone = false;
  let listener: (() => void) | null = null;
  response.on('close', () => {
    if (response.writableFinished) return;
    gone = true;
    listener?.();
  });
  return {
    get gone() {
      return gone;
    },
    onGone(next) {
      listener = next;
    },
  };
}

/**
 * Drops the connection mid-response the way a crashed server would: chunks already written still
 * reach the client (Node corks them until the next tick), then the socket closes without the
 * chunked terminator.
 */
export function cutConnection(response: ServerResponse): void {
  const socket = response.socket;
  if (socket === null || socket.destroyed) {
    response.destroy();
    return;
  }
  socket.end(() => socket.destroy());
}
