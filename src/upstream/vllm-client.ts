// Sends one generation request to vLLM over the shared keep-alive pool. The caller's abort signal
// is tied to the upstream request, so a client that leaves frees its GPU slot at once.
import type { HttpClient } from '../platform/http-client.js';
import { httpRequest } from '../platform/http-client.js';
import { classifyTransportError } from './upstream-failure.js';
import { dispatchPost, type DispatchedResponse } from './upstream-dispatch.js';

export type GenerationPath = '/v1/chat/completions' | '/v1/completions';

export type UpstreamResponse = DispatchedResponse;

export interface GenerationCall {
  baseUrl: string;
  apiKey: string | null;
  path: GenerationPath;
  body: string;
  requestId: string;
  stream: boolean;
  signal: AbortSignal;
  headersTimeoutMs: number;
  /** For streams, the longest silence between two chunks; for the rest, the whole body. */
  bodyTimeoutMs: number;
}

export function createVllmClient(options: { client: HttpClient }) {
  /** Each server may have its own key (UPSTREAMS_FILE); the caller's credentials are never sent. */
  const headersFor = (apiKey: string | null): Record<string, string> => ({
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    ...(apiKey === null ? {} : { authorization: `Bearer ${apiKey}` }),
  });

  return {
    /** Resolves with vLLM's response (any status); rejects with an UpstreamFailure when no response came. */
    async generate(call: GenerationCall): Promise<UpstreamResponse> {
      try {
        return await dispatchPost(
          options.client,
          call.baseUrl,
          call.path,
          {
            body: call.body,
            headers: { ...headersFor(call.apiKey), 'x-request-id': call.requestId },
            headersTimeout: call.headersTimeoutMs,
            bodyTimeout: call.bodyTimeoutMs,
          },
          call.signal,
        );
      } catch (error) {
        const timedOut = (call.signal.reason as { name?: unknown } | undefined)?.name === 'TimeoutError';
        if (call.signal.aborted && !timedOut) throw error;
        throw classifyTransportError(call.signal.aborted ? call.signal.reason : error);
      }
    },

    /** vLLM's own token count for a prompt (POST /tokenize), or null when the server cannot say. */
    async countTokens(input: { baseUrl: string; apiKey: string | null; model: string | null; messages: unknown[]; timeoutMs: number }): Promise<number | null> {
      try {
        const response = await httpRequest(`${input.baseUrl}/tokenize`, {
          method: 'POST',
          dispatcher: options.client,
          headers: headersFor(input.apiKey),
          body: JSON.stringify({ ...(input.model === null ? {} : { model: input.model }), messages: input.messages }),
          signal: AbortSignal.timeout(input.timeoutMs),
        });
        const text = await response.body.text();
        if (response.statusCode !== 200) return null;
        const count = (JSON.parse(text) as { count?: unknown }).count;
        return typeof count === 'number' ? count : null;
      } catch {
        return null;
      }
    },

    async get(input: { url: string; apiKey: string | null; timeoutMs: number }): Promise<{ statusCode: number; text: string }> {
      try {
        const response = await httpRequest(input.url, { method: 'GET', dispatcher: options.client, headers: headersFor(input.apiKey), signal: AbortSignal.timeout(input.timeoutMs) });
        return { statusCode: response.statusCode, text: await response.body.text() };
      } catch (error) {
        throw classifyTransportError(error);
      }
    },
  };
}

export type VllmClient = ReturnType<typeof createVllmClient>;
