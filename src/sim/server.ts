// The simulator's HTTP routing on plain node:http (fast enough to be a benchmark baseline): record
// the request, check the API key, play request-level faults, then dispatch to a handler.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isJsonObject, type JsonObject } from './body-fields.js';
import { UNAUTHORIZED_BODY, faultStatusError, httpError, type SimulatorError } from './errors.js';
import { FAULT_BODY_FIELD, FAULT_HEADER, mergeFaults, parseFault, parseFaultHeader, type SimulatorFault } from './faults.js';
import { handleGeneration } from './generation-handler.js';
import { readBody, sendEmpty, sendError, sendJson, watchClient, type ClientConnection } from './http-io.js';
import { renderModelList } from './models.js';
import { sleep } from './pacer.js';
import type { SimulatorSettings } from './options.js';
import type { SimulatorRuntime } from './runtime.js';
import { handleDetokenize, handleTokenize } from './tokenize-handler.js';

const ROUTE_METHODS: Record<string, string> = {
  '/v1/models': 'GET',
  '/v1/chat/completions': 'POST',
  '/v1/completions': 'POST',
  '/tokenize': 'POST',
  '/detokenize': 'POST',
  '/health': 'GET',
  '/version': 'GET',
  '/metrics': 'GET',
};

export function createRequestListener(runtime: SimulatorRuntime): (request: IncomingMessage, response: ServerResponse) => void {
  return (request, response) => {
    handleRequest(runtime, request, response).catch((error: unknown) => {
      console.error('simulator: request failed', error);
      sendError(response, httpError(500), runtime.settings.errorFormat);
    });
  };
}

async function handleRequest(runtime: SimulatorRuntime, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const connection = watchClient(response);
  const method = request.method ?? 'GET';
  const path = (request.url ?? '/').split('?', 1)[0] ?? '/';
  const bodyRead = await readBody(request);
  if (!bodyRead.ok) {
    if (bodyRead.reason === 'too-large') sendError(response, httpError(413), runtime.settings.errorFormat);
    return;
  }
  const parsedBody = parseJson(bodyRead.text);
  runtime.received.add({ method, path, headers: request.headers, body: parsedBody, rawBody: bodyRead.text, receivedAt: Date.now() });

  // Probes and scraping have their own switches (healthy, healthDelayMs) and ignore faults.
  if (method === 'GET' && path === '/health') return handleHealth(runtime, response, connection);
  if (method === 'GET' && path === '/version') return sendJson(response, 200, JSON.stringify({ version: runtime.settings.version }));
  if (method === 'GET' && path === '/metrics') return sendMetrics(runtime, response);

  if (path.startsWith('/v1') && !isAuthorized(request, runtime.settings.apiKey)) {
    return sendJson(response, 401, UNAUTHORIZED_BODY);
  }
  const fault = resolveFault(runtime, request, parsedBody);
  if (!fault.ok) return sendError(response, fault.error, runtime.settings.errorFormat);
  if (fault.fault.refuse === true) {
    request.socket.destroy();
    return;
  }
  if (fault.fault.delay_ms !== undefined && fault.fault.delay_ms > 0) {
    const delay = sleep(fault.fault.delay_ms);
    connection.onGone(delay.cancel);
    await delay.promise;
    if (connection.gone) return;
  }
  if (fault.fault.status !== undefined) {
    return sendError(response, faultStatusError(fault.fault.status), runtime.settings.errorFormat);
  }
  route({ runtime, request, response, connection, method, path, bodyText: bodyRead.text, fault: fault.fault });
}

function route(context: {
  runtime: SimulatorRuntime;
  request: IncomingMessage;
  response: ServerResponse;
  connection: ClientConnection;
  method: string;
  path: string;
  bodyText: string;
  fault: SimulatorFault;
}): void {
  const { runtime, request, response, path } = context;
  const errorFormat = runtime.settings.errorFormat;
  const expectedMethod = ROUTE_METHODS[path];
  if (expectedMethod === undefined) return sendError(response, httpError(404), errorFormat);
  if (expectedMethod !== context.method) return sendError(response, httpError(405), errorFormat);
  if (path === '/v1/models') {
    const created = runtime.settings.created ?? Math.floor(Date.now() / 1000);
    return sendJson(response, 200, renderModelList(runtime.models, created));
  }
  const body = jsonBodyOf(request, context.bodyText);
  if (!body.ok) return sendError(response, body.error, errorFormat);
  if (path === '/v1/chat/completions' || path === '/v1/completions') {
    const kind = path === '/v1/chat/completions' ? 'chat' : 'completion';
    return handleGeneration({ ...context, kind, body: body.value });
  }
  if (path === '/tokenize') return handleTokenize(runtime, response, body.value);
  return handleDetokenize(runtime, response, body.value);
}

async function handleHealth(runtime: SimulatorRuntime, response: ServerResponse, connection: ClientConnection): Promise<void> {
  if (runtime.settings.healthDelayMs > 0) {
    const delay = sleep(runtime.settings.healthDelayMs);
    connection.onGone(delay.cancel);
    await delay.promise;
    if (connection.gone) return;
  }
  sendEmpty(response, runtime.settings.healthy ? 200 : 503);
}

function sendMetrics(runtime: SimulatorRuntime, response: ServerResponse): void {
  const text = runtime.metrics.render();
  response.writeHead(200, {
    'content-type': 'text/plain; version=0.0.4; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}

/** vLLM's middleware compares the whole header with `Bearer <key>`. */
function isAuthorized(request: IncomingMessage, apiKey: string | null): boolean {
  return apiKey === null || request.headers.authorization === `Bearer ${apiKey}`;
}

function resolveFault(
  runtime: SimulatorRuntime,
  request: IncomingMessage,
  parsedBody: unknown,
): { ok: true; fault: SimulatorFault } | { ok: false; error: SimulatorError } {
  const fromHeader = parseFaultHeader(request.headers[FAULT_HEADER]);
  if (!fromHeader.ok) return { ok: false, error: httpError(400, fromHeader.message) };
  const fromBody = parseFault(isJsonObject(parsedBody) ? parsedBody[FAULT_BODY_FIELD] : undefined, FAULT_BODY_FIELD);
  if (!fromBody.ok) return { ok: false, error: httpError(400, fromBody.message) };
  return { ok: true, fault: mergeFaults([takeServerFault(runtime.settings), fromHeader.fault, fromBody.fault]) };
}

/** The fault set with `setFault`, counting this request against its uses. */
function takeServerFault(settings: SimulatorSettings): SimulatorFault | null {
  const fault = settings.fault;
  if (fault === null || settings.faultUsesLeft === null) return fault;
  settings.faultUsesLeft -= 1;
  if (settings.faultUsesLeft <= 0) {
    settings.fault = null;
    settings.faultUsesLeft = null;
  }
  return fault;
}

/** vLLM takes JSON only: another content type is 415, a body that is not a JSON object is 400. */
function jsonBodyOf(request: IncomingMessage, text: string): { ok: true; value: JsonObject } | { ok: false; error: SimulatorError } {
  const mediaType = (request.headers['content-type'] ?? '').split(';', 1)[0]?.trim().toLowerCase();
  if (mediaType !== 'application/json') {
    return { ok: false, error: httpError(415, "Unsupported Media Type: Only 'application/json' is allowed") };
  }
  const value = parseJson(text);
  if (!isJsonObject(value)) {
    const message = value === undefined ? 'JSON decode error' : 'Input should be a valid dictionary or object to extract fields from';
    return { ok: false, error: { status: 400, message, type: 'Bad Request', param: null } };
  }
  return { ok: true, value };
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
