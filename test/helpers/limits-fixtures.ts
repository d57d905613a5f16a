// Fixtures for the limits tests: a gateway in front of a vLLM simulator with the limits a test
// sets, callers with an access token and an API key, generation requests through inject (any
// client address) or a real socket, checks for the limit headers and 429 answers, the metrics,
// the admin's PATCH, and a TCP proxy between the gateway and Redis that a test can cut or slow.
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import type { LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import type { App } from '../../src/app.js';
import type { ErrorCode } from '../../src/errors.js';
import type { Simulator, SimulatorOptions } from '../../src/sim/index.js';
import { adminCredentials, adminEnvironment, bearer, createApiKey, expectError, login, randomIp, signUp } from './auth-client.js';
import type { Backend } from './environment.js';
import { metricSamples, metricSum, newRequestId, upstreamRequestsFor } from './relay-fixtures.js';
import type { TestApp } from './test-app.js';
import { startListeningGateway, type ListeningGateway } from './listening-gateway.js';

export const SIM_MODEL = 'sim-llama-3-8b';
export const CHAT_PATH = '/v1/chat/completions';
export const COMPLETIONS_PATH = '/v1/completions';
export const APP_CHAT_PATH = '/api/chat';
export const APP_CHAT_JSON_PATH = '/api/chat/completions';

export type LimitsGateway = ListeningGateway;

/**
 * A listening gateway whose VLLM_BASE_URL is a simulator (a new one, or `simulator`, which stays
 * the caller's), with the bootstrap admin, auth limits relaxed for sign-ups, and `environment` on top.
 */
export function startLimitsGateway(options: {
  backend: Backend;
  environment?: Record<string, string>;
  simulatorOptions?: SimulatorOptions;
  simulator?: Simulator;
  sharing?: TestApp;
}): Promise<LimitsGateway> {
  return startListeningGateway({ ...options, environment: { ...adminEnvironment, ...options.environment } });
}

export interface LimitsCaller {
  userId: string;
  email: string;
  accessToken: string;
  apiKey: string;
  apiKeyId: string;
}

/** A fresh user (signed up from an address of its own, so auth limits never get in the way) with one API key. */
export async function newLimitsCaller(app: App): Promise<LimitsCaller> {
  const signedIn = await signUp(app, { remoteAddress: randomIp() });
  const key = await createApiKey(app, signedIn.tokens.access_token, 'limits tests');
  return { userId: signedIn.user.id, email: signedIn.email, accessToken: signedIn.tokens.access_token, apiKey: key.key, apiKeyId: key.id };
}

/** A random IPv6 /64 prefix (documentation range), as four groups without the trailing `::`. */
export function randomIpv6Prefix(): string {
  const [a = 0, b = 0, c = 0, d = 0] = randomBytes(4);
  return `2001:db8:${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
}

export function chatBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: SIM_MODEL, messages: [{ role: 'user', content: 'hello there' }], max_tokens: 4, ...overrides };
}

export function completionBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: SIM_MODEL, prompt: 'hello there', max_tokens: 4, ...overrides };
}

/** A generation request through inject, from `remoteAddress` (127.0.0.1 by default), with a request id of its own. */
export async function generate(
  app: App,
  options: { credential: string; path?: string; body?: Record<string, unknown>; remoteAddress?: string; headers?: Record<string, string>; requestId?: string },
): Promise<LightMyRequestResponse & { requestId: string }> {
  const requestId = options.requestId ?? newRequestId();
  const path = options.path ?? CHAT_PATH;
  const body = options.body ?? (path === COMPLETIONS_PATH ? completionBody() : chatBody());
  const response = await app.inject({
    method: 'POST',
    url: path,
    headers: { ...bearer(options.credential), 'x-request-id': requestId, ...options.headers },
    payload: body,
    ...(options.remoteAddress === undefined ? {} : { remoteAddress: options.remoteAddress }),
  });
  return Object.assign(response, { requestId });
}

/** Fails unless the answer is a 200 (the body in the message otherwise). */
export function expectOk(response: LightMyRequestResponse): void {
  expect(response.statusCode, response.body).toBe(200);
}

// --- headers ------------------------------------------------------------------------------------

export type HeaderSource = LightMyRequestResponse['headers'] | IncomingHttpHeaders | Headers;

export function headerOf(source: HeaderSource, name: string): string | undefined {
  if (source instanceof Headers) return source.get(name) ?? undefined;
  const value = source[name];
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(', ') : String(value);
}

/** OpenAI's reset durations: `1s`, `6m0s`, `20ms`, `1h2m3.5s`. */
const durationPattern = /^(\d+h)?(\d+m)?(\d+(\.\d+)?(ms|s))?$/;

function integerHeader(source: HeaderSource, name: string): number {
  const value = headerOf(source, name);
  expect(value, `header ${name}`).toMatch(/^\d+$/);
  return Number(value);
}

/**
 * The request-rate headers, IETF and OpenAI, present and consistent with each other; `remaining`
 * when given must match exactly. Returns what they say.
 */
export function expectRequestLimitHeaders(source: HeaderSource, expected: { limit: number; remaining?: number }): { remaining: number; resetSeconds: number } {
  expect(integerHeader(source, 'ratelimit-limit')).toBe(expected.limit);
  const remaining = integerHeader(source, 'ratelimit-remaining');
  expect(remaining).toBeLessThanOrEqual(expected.limit);
  if (expected.remaining !== undefined) expect(remaining, 'ratelimit-remaining').toBe(expected.remaining);
  const resetSeconds = integerHeader(source, 'ratelimit-reset');
  expect(integerHeader(source, 'x-ratelimit-limit-requests')).toBe(expected.limit);
  expect(integerHeader(source, 'x-ratelimit-remaining-requests')).toBe(remaining);
  const reset = headerOf(source, 'x-ratelimit-reset-requests');
  expect(reset, 'x-ratelimit-reset-requests').toMatch(durationPattern);
  expect(reset).not.toBe('');
  return { remaining, resetSeconds };
}

/** The token headers of a caller with a token quota; `remaining` when given must match exactly. */
export function expectTokenLimitHeaders(source: HeaderSource, expected: { limit: number; remaining?: number }): { remaining: number } {
  expect(integerHeader(source, 'x-ratelimit-limit-tokens')).toBe(expected.limit);
  const remaining = integerHeader(source, 'x-ratelimit-remaining-tokens');
  expect(remaining).toBeLessThanOrEqual(expected.limit);
  if (expected.remaining !== undefined) expect(remaining, 'x-ratelimit-remaining-tokens').toBe(expected.remaining);
  expect(headerOf(source, 'x-ratelimit-reset-tokens'), 'x-ratelimit-reset-tokens').toMatch(durationPattern);
  return { remaining };
}

export function expectNoTokenLimitHeaders(source: HeaderSource): void {
  for (const name of ['x-ratelimit-limit-tokens', 'x-ratelimit-remaining-tokens', 'x-ratelimit-reset-tokens']) expect(headerOf(source, name), name).toBeUndefined();
}

/** A 429 with the envelope and `code`, and a Retry-After of whole seconds (at least 1); returns it. */
export function expectRefused(response: LightMyRequestResponse, code: Extract<ErrorCode, 'rate_limited' | 'quota_exceeded' | 'too_many_concurrent'>): number {
  expectError(response, 429, code);
  const retryAfter = headerOf(response.headers, 'retry-after');
  expect(retryAfter, 'retry-after').toMatch(/^\d+$/);
  expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
  return Number(retryAfter);
}

/** No generation request with this id reached vLLM. */
export function expectNotRelayed(simulator: Simulator, requestId: string): void {
  expect(upstreamRequestsFor(simulator, requestId), `upstream requests for ${requestId}`).toHaveLength(0);
}

// --- metrics, usage, admin ------------------------------------------------------------------------

export async function metricValue(app: App, name: string, labels: Record<string, string> = {}): Promise<number> {
  const response = await app.inject({ method: 'GET', url: '/metrics' });
  expect(response.statusCode).toBe(200);
  return metricSum(response.body, name, labels);
}

/** rate_limit_rejections_total by its `reason` label. */
export async function rejectionsByReason(app: App): Promise<Map<string, number>> {
  const samples = metricSamples(await metricsBody(app), 'rate_limit_rejections_total');
  const byReason = new Map<string, number>();
  for (const sample of samples) {
    const reason = /reason="([^"]*)"/.exec(sample.labels)?.[1];
    expect(reason, `labels of rate_limit_rejections_total: ${sample.labels}`).toBeDefined();
    byReason.set(reason!, (byReason.get(reason!) ?? 0) + sample.value);
  }
  return byReason;
}

/** What grew between two readings of rejectionsByReason. */
export function rejectionsSince(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const grown = new Map<string, number>();
  for (const [reason, value] of after) {
    const delta = value - (before.get(reason) ?? 0);
    if (delta !== 0) grown.set(reason, delta);
  }
  return grown;
}

export async function metricsBody(app: App): Promise<string> {
  const response = await app.inject({ method: 'GET', url: '/metrics' });
  expect(response.statusCode).toBe(200);
  return response.body;
}

export interface UsageWindow {
  limit: number;
  used: number;
  remaining: number;
  reset_seconds: number;
}

export interface UsageTotalsRow {
  model: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  errors: number;
  aborted: number;
}

export interface MyUsage {
  requests: { limit: number; remaining: number; window_seconds: number; reset_seconds: number };
  tokens_per_minute: UsageWindow | null;
  tokens_per_day: UsageWindow | null;
  max_concurrent_streams: number;
  today: UsageTotalsRow[];
}

export async function myUsage(app: App, credential: string): Promise<MyUsage> {
  const response = await app.inject({ method: 'GET', url: '/api/me/usage', headers: bearer(credential) });
  expect(response.statusCode, response.body).toBe(200);
  return response.json<MyUsage>();
}

export async function adminAccessToken(app: App): Promise<string> {
  const tokens = await login(app, { ...adminCredentials, remoteAddress: randomIp() });
  expect(tokens.user.role).toBe('admin');
  return tokens.access_token;
}

export interface LimitOverridesBody {
  rate_limit_requests?: number | null;
  rate_limit_window_seconds?: number | null;
  token_quota_per_minute?: number | null;
  token_quota_per_day?: number | null;
  max_concurrent_streams?: number | null;
}

export function patchUser(app: App, adminToken: string, userId: string, body: Record<string, unknown>): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'PATCH', url: `/api/admin/users/${userId}`, headers: bearer(adminToken), payload: body });
}

export async function setLimits(app: App, adminToken: string, userId: string, limits: LimitOverridesBody): Promise<void> {
  const response = await patchUser(app, adminToken, userId, limits as Record<string, unknown>);
  expect(response.statusCode, response.body).toBe(200);
}

// --- time -----------------------------------------------------------------------------------------

export function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

/**
 * Token quotas count in fixed windows (the clock's minute, the UTC day). A test that reads a
 * counter back waits, when needed, for a fresh window so it does not straddle two.
 */
export async function awaitRoomInWindow(windowMs: number, neededMs: number): Promise<void> {
  const left = windowMs - (Date.now() % windowMs);
  if (left < neededMs) await sleep(left + 20);
}

/** Retries `check` until it passes or `timeoutMs` is over (then its last failure is thrown). */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 2000, intervalMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(intervalMs);
    }
  }
}

// --- a TCP proxy in front of Redis ----------------------------------------------------------------

export interface TcpProxy {
  port: number;
  /** The Redis URL `target` with its host and port replaced by this proxy's. */
  redisUrl: string;
  /** Destroys every open connection and stops accepting new ones (Redis "goes away"). */
  cut(): Promise<void>;
  /** Accepts connections again on the same port. */
  restore(): Promise<void>;
  /** Holds every chunk this long before passing it on, in both directions (0: at once). */
  setDelay(milliseconds: number): void;
  /** The connections open now pass nothing more either way, and are never closed (half-open); new ones work. */
  blackHoleOpenConnections(): void;
  close(): Promise<void>;
}

/** One direction of a connection: chunks leave in order, each no earlier than its delay allows. */
function delayedPipe(from: Socket, to: Socket, delayOf: () => number, blackHoled: () => boolean = () => false): void {
  const queue: Array<{ chunk: Buffer; releaseAt: number }> = [];
  let timer: NodeJS.Timeout | null = null;
  const pump = (): void => {
    timer = null;
    while (queue.length > 0 && queue[0]!.releaseAt <= Date.now()) {
      const { chunk } = queue.shift()!;
      if (!to.destroyed) to.write(chunk);
    }
    if (queue.length > 0) timer = setTimeout(pump, Math.max(0, queue[0]!.releaseAt - Date.now()));
  };
  from.on('data', (chunk: Buffer) => {
    if (blackHoled()) return;
    const last = queue.at(-1)?.releaseAt ?? 0;
    queue.push({ chunk, releaseAt: Math.max(Date.now() + delayOf(), last) });
    if (timer === null) pump();
  });
  from.on('close', () => {
    if (timer !== null) clearTimeout(timer);
    to.destroy();
  });
  from.on('error', () => to.destroy());
}

export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const targetUrl = new URL(target);
  const targetPort = Number(targetUrl.port === '' ? 6379 : targetUrl.port);
  const sockets = new Set<Socket>();
  const blackHoles = new Set<{ on: boolean }>();
  let delayMs = 0;
  const server: Server = createServer((client) => {
    const upstream = connect({ host: targetUrl.hostname, port: targetPort });
    const blackHole = { on: false };
    blackHoles.add(blackHole);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => {
        sockets.delete(socket);
        blackHoles.delete(blackHole);
      });
      socket.on('error', () => undefined);
    }
    delayedPipe(client, upstream, () => delayMs, () => blackHole.on);
    delayedPipe(upstream, client, () => delayMs, () => blackHole.on);
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  await listen(0);
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no port');
  const port = address.port;
  const proxyUrl = new URL(target);
  proxyUrl.hostname = '127.0.0.1';
  proxyUrl.port = String(port);
  let listening = true;

  async function stopListening(): Promise<void> {
    if (!listening) return;
    listening = false;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    await closed;
  }

  return {
    port,
    redisUrl: proxyUrl.toString(),
    cut: stopListening,
    async restore() {
      if (listening) return;
      await listen(port);
      listening = true;
    },
    setDelay(milliseconds) {
      delayMs = milliseconds;
    },
    blackHoleOpenConnections() {
      for (const blackHole of blackHoles) blackHole.on = true;
    },
    close: stopListening,
  };
}
