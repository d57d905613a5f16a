// Fixtures for the multi-server routing tests: several vLLM simulators, an UPSTREAMS_FILE (YAML or
// JSON) in a temp dir, a listening gateway with short routing intervals, and ways to see which
// simulator got a request, hold a slow stream open, and read the gateway's view of each server.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { stringify as toYaml } from 'yaml';
import type { App } from '../../src/app.js';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../src/sim/index.js';
import { adminCredentials, adminEnvironment, bearer, login, randomIp, relaxedAuthLimits } from './auth-client.js';
import { CHAT_PATH, SIM_CREATED, callGateway, chatMessages, newCaller, newRequestId, upstreamRequestsFor, type Caller, type HttpReply } from './relay-fixtures.js';
import { createTestApp, type TestApp } from './test-app.js';

export const MODEL_A = 'sim-model-a';
export const MODEL_B = 'sim-model-b';
export const LORA_A = 'sim-lora-a';

/** Short intervals so nothing in these tests waits long, and limits high enough for many requests. */
export const routingEnvironment: Record<string, string> = {
  ...relaxedAuthLimits,
  ...adminEnvironment,
  MAX_CONCURRENT_STREAMS: '1000',
  RATE_LIMIT_REQUESTS: '100000',
  RATE_LIMIT_IP_REQUESTS: '100000',
  UPSTREAM_POLL_INTERVAL_MS: '100',
  UPSTREAM_COOLDOWN_MS: '300',
  MODELS_CACHE_TTL_MS: '100',
};

export interface UpstreamEntry {
  name: string;
  url: string;
  api_key?: string;
  models?: string[];
  weight?: number;
  max_concurrency?: number;
}

export interface UpstreamsFileBody {
  upstreams: UpstreamEntry[];
  aliases?: Record<string, string>;
}

/** A temp dir for UPSTREAMS_FILE: a `.json` name is written as JSON, anything else as YAML; a string as is. */
export interface ConfigDirectory {
  path: string;
  write(fileName: string, content: UpstreamsFileBody | string): string;
  remove(): void;
}

export function configDirectory(): ConfigDirectory {
  const path = mkdtempSync(join(tmpdir(), 'upstreams-'));
  return {
    path,
    write(fileName, content) {
      const file = join(path, fileName);
      const text = typeof content === 'string' ? content : fileName.endsWith('.json') ? JSON.stringify(content, null, 2) : toYaml(content);
      writeFileSync(file, text);
      return file;
    },
    remove: () => rmSync(path, { recursive: true, force: true }),
  };
}

export interface Cluster {
  sims: Record<string, Simulator>;
  directory: ConfigDirectory;
  /** The UPSTREAMS_FILE the gateway started with. */
  file: string;
  testApp: TestApp;
  app: App;
  /** `http://127.0.0.1:<port>` of the listening gateway. */
  url: string;
  caller: Caller;
  adminToken: string;
  close(): Promise<void>;
}

/**
 * Starts one simulator per name, writes the UPSTREAMS_FILE `file(urls)` returns, starts a gateway on
 * it, and waits until every server's models were discovered.
 */
export async function startCluster(options: {
  simulators: Record<string, SimulatorOptions>;
  file: (urls: Record<string, string>) => UpstreamsFileBody;
  fileName?: string;
  environment?: Record<string, string>;
  captureLogs?: boolean;
}): Promise<Cluster> {
  const sims: Record<string, Simulator> = {};
  const directory = configDirectory();
  const closeSims = async (): Promise<void> => {
    await Promise.all(Object.values(sims).map((sim) => sim.close()));
  };
  let testApp: TestApp;
  let file: string;
  try {
    for (const [name, simulatorOptions] of Object.entries(options.simulators)) {
      sims[name] = await startSimulator({ created: SIM_CREATED, ...simulatorOptions });
    }
    const urls = Object.fromEntries(Object.entries(sims).map(([name, sim]) => [name, sim.url]));
    file = directory.write(options.fileName ?? 'upstreams.yaml', options.file(urls));
    testApp = await createTestApp({
      backend: 'embedded',
      environment: { ...routingEnvironment, UPSTREAMS_FILE: file, ...options.environment },
      ...(options.captureLogs === undefined ? {} : { captureLogs: options.captureLogs }),
    });
  } catch (error) {
    await closeSims();
    directory.remove();
    throw error;
  }
  const close = async (): Promise<void> => {
    await testApp.close();
    await closeSims();
    directory.remove();
  };
  try {
    const url = await testApp.app.listen({ port: 0, host: '127.0.0.1' });
    const caller = await newCaller(testApp.app);
    const adminToken = (await login(testApp.app, { ...adminCredentials, remoteAddress: randomIp() })).access_token;
    const cluster: Cluster = { sims, directory, file, testApp, app: testApp.app, url, caller, adminToken, close };
    await waitUntil(
      () => adminUpstreams(cluster),
      (view) => view.data.length > 0 && view.data.every((row) => row.models.length > 0),
      { what: 'every server’s models discovered' },
    );
    return cluster;
  } catch (error) {
    await close();
    throw error;
  }
}

// --- the gateway's view -------------------------------------------------------------------------

export interface UpstreamRow {
  name: string;
  url: string;
  models: string[];
  healthy: boolean;
  breaker: 'closed' | 'open' | 'half_open';
  in_flight: number;
  max_concurrency: number | null;
  weight: number;
  vllm_waiting_requests: number | null;
  error_rate: number;
}

export interface UpstreamsView {
  data: UpstreamRow[];
  aliases: Record<string, string>;
}

export async function adminUpstreams(cluster: { app: App; adminToken: string }): Promise<UpstreamsView> {
  const response = await cluster.app.inject({ method: 'GET', url: '/api/admin/upstreams', headers: bearer(cluster.adminToken) });
  expect(response.statusCode, response.body).toBe(200);
  return response.json<UpstreamsView>();
}

/** One server's row; fails when the gateway does not list it. */
export function rowOf(view: UpstreamsView, name: string): UpstreamRow {
  const row = view.data.find((candidate) => candidate.name === name);
  expect(row, `upstream ${name} in ${JSON.stringify(view.data.map((entry) => entry.name))}`).toBeDefined();
  return row!;
}

export interface HealthUpstream {
  name: string;
  status: 'up' | 'down';
  breaker: string;
  in_flight: number;
  latency_ms: number;
}

export async function healthUpstreams(app: App): Promise<HealthUpstream[]> {
  const response = await app.inject({ method: 'GET', url: '/health' });
  expect([200, 503]).toContain(response.statusCode);
  return response.json<{ services: { vllm: { upstreams: HealthUpstream[] } } }>().services.vllm.upstreams;
}

// --- requests -----------------------------------------------------------------------------------

export interface Sent extends HttpReply {
  requestId: string;
}

/** A chat completion through the gateway's /v1 API, with its own X-Request-Id. */
export async function sendChat(cluster: { url: string; caller: Caller }, fields: Record<string, unknown> = {}, path = CHAT_PATH): Promise<Sent> {
  const requestId = newRequestId();
  const reply = await callGateway({
    url: cluster.url,
    path,
    body: { model: MODEL_A, messages: chatMessages('which server answers?'), max_tokens: 8, ...fields },
    credential: cluster.caller.apiKey,
    headers: { 'x-request-id': requestId },
  });
  return { ...reply, requestId };
}

/** The simulators (by name) that received a generation request with this X-Request-Id. */
export function seenBy(sims: Record<string, Simulator>, requestId: string): string[] {
  return Object.entries(sims)
    .filter(([, sim]) => upstreamRequestsFor(sim, requestId).length > 0)
    .map(([name]) => name);
}

/** The one simulator that received this request; fails when none or several did. */
export function servedBy(sims: Record<string, Simulator>, requestId: string): string {
  const names = seenBy(sims, requestId);
  expect(names, `simulators that received ${requestId}`).toHaveLength(1);
  return names[0]!;
}

/** A stream the client keeps reading but never finishes: it holds its server until released. */
export interface HeldStream {
  requestId: string;
  text(): string;
  /** The client hangs up; resolves once the connection is closed. */
  release(): Promise<void>;
}

/** Opens a slow stream through the gateway and resolves once vLLM's first event arrived. */
export async function holdStream(cluster: { url: string; caller: Caller }, fields: Record<string, unknown> = {}): Promise<HeldStream> {
  const requestId = newRequestId();
  const payload = JSON.stringify({
    model: MODEL_A,
    messages: chatMessages('keep this server busy'),
    max_tokens: 3000,
    ignore_eos: true,
    stream: true,
    ...fields,
  });
  let text = '';
  const request = httpRequest(`${cluster.url}${CHAT_PATH}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(payload),
      authorization: `Bearer ${cluster.caller.apiKey}`,
      'x-request-id': requestId,
    },
    agent: false,
  });
  const closed = new Promise<void>((resolve) => request.on('close', () => resolve()));
  const started = new Promise<void>((resolve, reject) => {
    request.on('error', reject);
    request.on('response', (response) => {
      response.on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8');
        if (response.statusCode === 200 && text.includes('data: {')) resolve();
      });
      response.on('error', () => undefined);
      response.on('end', () => reject(new Error(`held stream ${requestId} ended (HTTP ${response.statusCode}): ${text.slice(0, 300)}`)));
    });
  });
  request.end(payload);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      started,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`held stream ${requestId} did not start within 5 s: ${text.slice(0, 300)}`)), 5000);
      }),
    ]);
  } catch (error) {
    request.destroy();
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return {
    requestId,
    text: () => text,
    async release() {
      request.destroy();
      await closed;
    },
  };
}

// --- time ---------------------------------------------------------------------------------------

export function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

/** Polls `read` until `accept` holds; fails with the last value when the deadline passes. */
export async function waitUntil<T>(read: () => Promise<T>, accept: (value: T) => boolean, options: { what: string; timeoutMs?: number; intervalMs?: number }): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 3000);
  for (;;) {
    const value = await read();
    if (accept(value)) return value;
    if (Date.now() > deadline) throw new Error(`not within ${options.timeoutMs ?? 3000} ms: ${options.what}; last: ${JSON.stringify(value).slice(0, 800)}`);
    await sleep(options.intervalMs ?? 25);
  }
}
