// One request to vLLM through undici's dispatcher, with a handler of our own: resolves with the
// status and headers once they come, the body then arriving in an UpstreamBody (upstream-body.ts
// says why not `request()`). The caller's signal aborts it at any point: before a connection is
// taken, while waiting for the answer, or in the middle of the body.
import type { IncomingHttpHeaders } from 'node:http';
import { BoundedMap } from '../platform/bounded-map.js';
import type { Dispatcher } from '../platform/http-client.js';
import { UpstreamBody } from './upstream-body.js';

export interface DispatchedResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: UpstreamBody;
}

export interface PostRequest {
  body: string;
  headers: Record<string, string>;
  headersTimeout: number;
  bodyTimeout: number;
}

/** The configured servers' base URLs, parsed; bounded, as servers come and go with UPSTREAMS_FILE. */
const parsedBases = new BoundedMap<string, { origin: string; pathPrefix: string }>(1000);

/** Where a base URL's origin ends and its path (a prefix, such as `/vllm`) begins; parsed once per base. */
function parseBase(baseUrl: string): { origin: string; pathPrefix: string } {
  let parsed = parsedBases.get(baseUrl);
  if (parsed === undefined) {
    const url = new URL(baseUrl);
    parsed = { origin: url.origin, pathPrefix: url.pathname.replace(/\/+$/, '') };
    parsedBases.set(baseUrl, parsed);
  }
  return parsed;
}

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}

export function dispatchPost(dispatcher: Dispatcher, baseUrl: string, path: string, request: PostRequest, signal: AbortSignal): Promise<DispatchedResponse> {
  if (signal.aborted) return Promise.reject(asError(signal.reason));
  const { origin, pathPrefix } = parseBase(baseUrl);
  return new Promise((resolve, reject) => {
    let controller: Dispatcher.DispatchController | null = null;
    let body: UpstreamBody | null = null;
    const settled = () => signal.removeEventListener('abort', onAbort);
    // undici hands over its controller only when the request is written to a connection: an abort
    // while one is still being made answers the caller at once, and onRequestStart cuts it there.
    const onAbort = () => {
      if (controller !== null) return controller.abort(asError(signal.reason));
      settled();
      reject(asError(signal.reason));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    dispatcher.dispatch(
      {
        origin,
        path: `${pathPrefix}${path}`,
        method: 'POST',
        headers: request.headers,
        body: request.body,
        headersTimeout: request.headersTimeout,
        bodyTimeout: request.bodyTimeout,
      },
      {
        onRequestStart(requestController) {
          controller = requestController;
          // Aborted while its connection was being made: it ends here, before it is sent.
          if (signal.aborted) requestController.abort(asError(signal.reason));
        },
        onResponseStart(requestController, statusCode, headers) {
          if (statusCode < 200 || body !== null) return;
          body = new UpstreamBody(requestController);
          resolve({ statusCode, headers, body });
        },
        onResponseData(_requestController, chunk) {
          body?.push(chunk);
        },
        onResponseEnd() {
          settled();
          body?.end();
        },
        onResponseError(_requestController, error) {
          settled();
          if (body === null) reject(error);
          else body.fail(error);
        },
      },
    );
  });
}
