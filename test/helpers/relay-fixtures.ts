// Fixtures for the /v1 relay tests: a vLLM simulator and a listening gateway wired to it, callers
// with API keys, clients that talk over a real socket (and can stop reading or hang up), strict SSE
// framing, the usage rows the gateway records, and Prometheus samples.
import { randomUUID } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Kysely } from 'kysely';
import { expect } from 'vitest';
import type { App } from '../../src/app.js';
import { errorCatalog, type ErrorCode } from '../../src/errors.js';
import type { ReceivedRequest, Simulator, SimulatorOptions } from '../../src/sim/index.js';
import { createApiKey, signUp, type SignedInUser } from './auth-client.js';
import type { Backend } from './environment.js';
import { startListeningGateway, type ListeningGateway } from './listening-gateway.js';

export { SIM_CREATED } from './listening-gateway.js';
export const SIM_MODEL = 'sim-llama-3-8b';
export const CHAT_PATH = '/v1/chat/completions';
export const COMPLETIONS_PATH = '/v1/completions';
export const GENERATION_PATHS: readonly string[] = [CHAT_PATH, COMPLETIONS_PATH];

export type Relay = ListeningGateway;

/** Starts a simulator, then a gateway whose VLLM_BASE_URL points at it, listening on a free port. */
export function startRelay(options: { backend: Backend; environment?: Record<string, string>; simulator?: SimulatorOptions; captureLogs?: boolean }): Promise<Relay> {
  return startListeningGateway({
    backend: options.backend,
    ...(options.environment === undefined ? {} : { environment: options.environment }),
    simulatorOptions: options.simulator,
    captureLogs: options.captureLogs,
  });
}

/** A TCP port nothing listens on (bound once, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface Caller {
  signedIn: SignedInUser;
  userId: string;
  email: string;
  accessToken: string;
  apiKey: string;
  apiKeyId: string;
  apiKeyPrefix: string;
}

/** A fresh user, logged in, with one API key. */
export async function newCaller(app: App): Promise<Caller> {
  const signedIn = await signUp(app);
  const created = await createApiKey(app, signedIn.tokens.access_token, 'relay tests');
  return {
    signedIn,
    userId: signedIn.user.id,
    email: signedIn.email,
    accessToken: signedIn.tokens.access_token,
    apiKey: created.key,
    apiKeyId: created.id,
    apiKeyPrefix: created.prefix,
  };
}

/** A well-formed request id the gateway keeps (and vLLM then uses in `chatcmpl-<id>`). */
export function newRequestId(): string {
  return `relay-test-${randomUUID()}`;
}

export function chatMessages(content: string): Array<{ role: string; content: string }> {
  return [{ role: 'user', content }];
}

export interface HttpReply {
  status: number;
  headers: Headers;
  /** The body exactly as received. */
  bytes: Buffer;
  text: string;
}

/** A request to the gateway over its socket; `credential` becomes `Authorization: Bearer …`. */
export async function callGateway(options: {
  url: string;
  path: string;
  method?: 'GET' | 'POST';
  body?: unknown;
  credential?: string | null;
  headers?: Record<string, string>;
}): Promise<HttpReply> {
  const method = options.method ?? (options.body === undefined ? 'GET' : 'POST');
  const headers: Record<string, string> = {};
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (options.credential !== undefined && options.credential !== null) headers.authorization = `Bearer ${options.credential}`;
  const response = await fetch(`${options.url}${options.path}`, {
    method,
    headers: { ...headers, ...options.headers },
    ...(options.body === undefined ? {} : { body: typeof options.body === 'string' ? options.body : JSON.stringify(options.body) }),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  return { status: response.status, headers: response.headers, bytes, text: bytes.toString('utf8') };
}

/** Marks the tests' own calls to the simulator, so they are not mistaken for the gateway's. */
const DIRECT_CALL_HEADER = 'x-relay-test-direct';

/** The same request sent to the simulator directly, as the reference transcript. */
export async function callSimulator(options: {
  simulator: Simulator;
  path: string;
  body: unknown;
  requestId: string;
  headers?: Record<string, string>;
}): Promise<HttpReply> {
  const response = await fetch(`${options.simulator.url}${options.path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': options.requestId, [DIRECT_CALL_HEADER]: '1', ...options.headers },
    body: JSON.stringify(options.body),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  return { status: response.status, headers: response.headers, bytes, text: bytes.toString('utf8') };
}

/**
 * A direct call whose answer the simulator may cut short (fault `cut_after_chunks`): resolves with
 * whatever arrived and whether the response ended cleanly, where fetch would only throw.
 */
export function callSimulatorUntilCut(options: { simulator: Simulator; path: string; body: unknown; requestId: string }): Promise<{ status: number; text: string; complete: boolean }> {
  const payload = JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const request = httpRequest(`${options.simulator.url}${options.path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(payload),
        'x-request-id': options.requestId,
        [DIRECT_CALL_HEADER]: '1',
      },
      agent: false,
    });
    request.on('error', reject);
    request.on('response', (response) => {
      let text = '';
      const settle = (complete: boolean): void => resolve({ status: response.statusCode ?? 0, text, complete });
      response.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      response.on('end', () => settle(true));
      response.on('aborted', () => settle(false));
      response.on('error', () => settle(false));
    });
    request.end(payload);
  });
}

export function parseJson<T>(reply: HttpReply): T {
  return JSON.parse(reply.text) as T;
}

/** The generation requests the gateway sent the simulator with this X-Request-Id (the tests' direct calls left out). */
export function upstreamRequestsFor(simulator: Simulator, requestId: string): ReceivedRequest[] {
  return simulator.received.filter(
    (entry) => GENERATION_PATHS.includes(entry.path) && entry.headers['x-request-id'] === requestId && entry.headers[DIRECT_CALL_HEADER] === undefined,
  );
}

/** The one generation request the simulator received with this X-Request-Id. */
export function upstreamRequestFor(simulator: Simulator, requestId: string): ReceivedRequest & { body: Record<string, unknown> } {
  const matching = upstreamRequestsFor(simulator, requestId);
  expect(matching, `upstream requests with x-request-id ${requestId}`).toHaveLength(1);
  const entry = matching[0]!;
  expect(typeof entry.body).toBe('object');
  return entry as ReceivedRequest & { body: Record<string, unknown> };
}

export interface ErrorEnvelopeBody {
  error: { message: string; type: string; code: ErrorCode; param: string | null };
}

/**
 * Checks a gateway error answer over HTTP: status, a JSON envelope of exactly four fields, the
 * code (one of several when the contract allows a choice), its catalogue type and the request id.
 */
export function expectErrorReply(reply: HttpReply, status: number, code: ErrorCode | readonly ErrorCode[]): ErrorEnvelopeBody {
  expect(reply.status, reply.text).toBe(status);
  expect(reply.headers.get('content-type') ?? '').toMatch(/^application\/json/);
  const body = JSON.parse(reply.text) as ErrorEnvelopeBody;
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  const codes: readonly ErrorCode[] = typeof code === 'string' ? [code] : code;
  expect(codes).toContain(body.error.code);
  expect(body.error.type).toBe(errorCatalog[body.error.code].type);
  expect(typeof body.error.message).toBe('string');
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(reply.headers.get('x-request-id')).toEqual(expect.any(String));
  return body;
}

/** Every code of the catalogue whose status is `status`: for answers where only the status is pinned. */
export function codesWithStatus(status: number): ErrorCode[] {
  return (Object.keys(errorCatalog) as ErrorCode[]).filter((code) => errorCatalog[code].status === status);
}

/** Splits an SSE body into frames (`…\n\n`), failing when it does not end with a blank line. */
export function sseFrames(text: string): string[] {
  if (!text.endsWith('\n\n')) throw new Error(`stream does not end with a blank line: ${JSON.stringify(text.slice(-80))}`);
  return text.slice(0, -2).split('\n\n');
}

/** The `data:` payloads of a stream whose every frame is exactly `data: …\n\n` (no comments, no `event:`). */
export function sseData(text: string): string[] {
  return sseFrames(text).map((frame) => {
    if (!frame.startsWith('data: ') || frame.includes('\n')) throw new Error(`bad SSE frame: ${JSON.stringify(frame)}`);
    return frame.slice('data: '.length);
  });
}

/** The stream with its comment frames (`: …\n\n`, heartbeats) taken out. */
export function withoutComments(text: string): string {
  return sseFrames(text)
    .filter((frame) => !frame.startsWith(':'))
    .map((frame) => `${frame}\n\n`)
    .join('');
}

/** A POST over a fresh connection whose response the test reads by hand, pauses, or destroys. */
export function openRawPost(options: {
  url: string;
  path: string;
  body: unknown;
  credential: string;
  requestId: string;
}): { response: Promise<IncomingMessage>; destroy: () => void; closed: Promise<void> } {
  const payload = JSON.stringify(options.body);
  const request = httpRequest(`${options.url}${options.path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(payload),
      authorization: `Bearer ${options.credential}`,
      'x-request-id': options.requestId,
    },
    agent: false,
  });
  const closed = new Promise<void>((resolve) => request.on('close', () => resolve()));
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    request.on('response', resolve);
    request.on('error', reject);
  });
  // A destroyed request rejects `response`; the tests that destroy early do not wait for it.
  response.catch(() => undefined);
  request.end(payload);
  return { response, closed, destroy: () => request.destroy() };
}

/** Reads a raw response until `predicate` holds for the text so far (or the response ends). */
export function readUntil(response: IncomingMessage, predicate: (text: string) => boolean, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const finish = (outcome: () => void): void => {
      clearTimeout(timer);
      response.off('data', onData);
      response.off('end', onEnd);
      response.pause();
      outcome();
    };
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8');
      if (predicate(text)) finish(() => resolve(text));
    };
    const onEnd = (): void => finish(() => resolve(text));
    const timer = setTimeout(() => finish(() => reject(new Error(`readUntil: condition not met within ${timeoutMs} ms; got ${JSON.stringify(text.slice(0, 400))}`))), timeoutMs);
    response.on('data', onData);
    response.on('end', onEnd);
  });
}

/** The number of `data:` events carrying generated text (`"content":"…"` or `"text":"…"` not empty). */
export function countContentEvents(text: string): number {
  return text.split('\n\n').filter((frame) => frame.startsWith('data: {') && /"(content|text)":"[^"]/.test(frame)).length;
}

// --- usage events -------------------------------------------------------------------------------

export interface UsageEventRow {
  id: unknown;
  created_at: Date;
  user_id: string;
  api_key_id: string | null;
  endpoint: string;
  model: string | null;
  stream: boolean;
  status: string;
  finish_reason: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  usage_estimated: boolean;
  ttft_ms: number | null;
  duration_ms: number | null;
  request_id: string | null;
}

interface UsageTables {
  usage_events: UsageEventRow;
}

/** What the relay contract says the app exposes for tests: its database and a usage flush. */
interface GatewayHandle {
  flushUsage(): Promise<void>;
  database: { db: unknown };
}

function gatewayOf(app: App): GatewayHandle {
  const gateway = (app as unknown as { gateway?: GatewayHandle }).gateway;
  if (gateway === undefined) throw new Error('app.gateway is not decorated: the usage recorder is missing');
  return gateway;
}

/** Flushes the usage batcher and reads the rows recorded for `requestId`. */
export async function usageEventsFor(app: App, requestId: string): Promise<UsageEventRow[]> {
  const gateway = gatewayOf(app);
  await gateway.flushUsage();
  const db = gateway.database.db as Kysely<UsageTables>;
  return db.selectFrom('usage_events').selectAll().where('request_id', '=', requestId).execute();
}

/**
 * The one usage row of `requestId`. Aborted requests are recorded once the gateway has noticed the
 * disconnect, so this polls (flushing each time) until the row is there.
 */
export async function usageEventFor(app: App, requestId: string, timeoutMs = 3000): Promise<UsageEventRow> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await usageEventsFor(app, requestId);
    if (rows.length > 0 || Date.now() > deadline) {
      expect(rows, `usage_events rows for request ${requestId}`).toHaveLength(1);
      return rows[0]!;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

// --- metrics ------------------------------------------------------------------------------------

export async function metricsText(url: string): Promise<string> {
  const response = await fetch(`${url}/metrics`);
  expect(response.status).toBe(200);
  return response.text();
}

/** The samples of metric `name` (exactly that name) whose labels include `labels`. */
export function metricSamples(text: string, name: string, labels: Record<string, string> = {}): Array<{ labels: string; value: number }> {
  const samples: Array<{ labels: string; value: number }> = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    let labelText: string;
    if (line.startsWith(`${name}{`)) labelText = line.slice(name.length + 1, line.lastIndexOf('}'));
    else if (line.startsWith(`${name} `)) labelText = '';
    else continue;
    const present: string[] = labelText === '' ? [] : labelText.match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? [];
    if (!Object.entries(labels).every(([key, value]) => present.includes(`${key}="${value}"`))) continue;
    samples.push({ labels: labelText, value: Number(line.slice(line.lastIndexOf(' ') + 1)) });
  }
  return samples;
}

/** The sum of the matching samples (0 when there are none). */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  return metricSamples(text, name, labels).reduce((total, sample) => total + sample.value, 0);
}

export function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}
