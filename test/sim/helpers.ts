// Small clients for the simulator tests: JSON posts, strict SSE framing, metric lookups, and a raw
// node:http request the test can destroy mid-response.
import { request as httpRequest, type IncomingMessage } from 'node:http';

export interface JsonReply<T> {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed body, typed by the caller (undefined when it was not JSON). */
  json: T;
}

export async function postJson<T = unknown>(options: {
  url: string;
  body: unknown;
  headers?: Record<string, string>;
}): Promise<JsonReply<T>> {
  const response = await fetch(options.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...options.headers },
    body: typeof options.body === 'string' ? options.body : JSON.stringify(options.body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, json: parseOrUndefined(text) as T };
}

export async function getText(url: string, headers?: Record<string, string>): Promise<{ status: number; headers: Headers; text: string }> {
  const response = await fetch(url, { headers });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

function parseOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Splits an SSE body into its `data:` payloads, failing on anything that is not exactly `data: …\n\n`. */
export function sseData(body: string): string[] {
  if (!body.endsWith('\n\n')) throw new Error(`stream does not end with a blank line: ${JSON.stringify(body.slice(-40))}`);
  return body
    .slice(0, -2)
    .split('\n\n')
    .map((frame) => {
      if (!frame.startsWith('data: ') || frame.includes('\n')) throw new Error(`bad SSE frame: ${JSON.stringify(frame)}`);
      return frame.slice('data: '.length);
    });
}

/** The JSON events of a stream that ends with `data: [DONE]`. */
export function sseJsonEvents<T>(body: string): T[] {
  const data = sseData(body);
  if (data.at(-1) !== '[DONE]') throw new Error('stream does not end with [DONE]');
  return data.slice(0, -1).map((payload) => JSON.parse(payload) as T);
}

/** The value of one sample in Prometheus text, matched by name and a subset of labels. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labelText = line.slice(name.length).split('}')[0] ?? '';
    if (!Object.entries(labels).every(([key, value]) => labelText.includes(`${key}="${value}"`))) continue;
    return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  throw new Error(`metric ${name} ${JSON.stringify(labels)} not found`);
}

export async function metricsOf(baseUrl: string): Promise<string> {
  return (await getText(`${baseUrl}/metrics`)).text;
}

export const CHAT_PATH = '/v1/chat/completions';
export const COMPLETIONS_PATH = '/v1/completions';

export function userMessage(content: string): Array<{ role: string; content: string }> {
  return [{ role: 'user', content }];
}

/** A POST whose response the test reads by hand and can destroy at any time. */
export function openRawPost(options: { url: string; body: unknown }): {
  response: Promise<IncomingMessage>;
  destroy: () => void;
  closed: Promise<void>;
} {
  const payload = JSON.stringify(options.body);
  const request = httpRequest(options.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    agent: false,
  });
  const closed = new Promise<void>((resolve) => request.on('close', () => resolve()));
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    request.on('response', resolve);
    request.on('error', reject);
  });
  request.end(payload);
  return {
    response,
    closed,
    destroy: () => request.destroy(),
  };
}

/** Resolves with the first body bytes of `response`. */
export function firstBodyChunk(response: IncomingMessage): Promise<string> {
  return new Promise((resolve) => response.once('data', (chunk: Buffer) => resolve(chunk.toString('utf8'))));
}

/** Resolves with everything a raw response delivers, and whether it ended cleanly or was cut. */
export function collectRawBody(response: IncomingMessage): Promise<{ text: string; complete: boolean }> {
  return new Promise((resolve) => {
    let text = '';
    response.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    response.on('end', () => resolve({ text, complete: true }));
    response.on('error', () => resolve({ text, complete: false }));
    response.on('aborted', () => resolve({ text, complete: false }));
  });
}

export async function waitUntil(check: () => Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('condition not met in time');
}
