// Fixtures for the conversations and /api/chat tests: a vLLM simulator with a listening gateway in
// front of it, signed-in users, calls over a real socket (streams read as they arrive, or cut), SSE
// parsing, the conversation and message shapes, and the generation requests vLLM received.
import { randomUUID } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import type { App } from '../../src/app.js';
import { errorCatalog, type ErrorCode } from '../../src/errors.js';
import type { ReceivedRequest, Simulator, SimulatorOptions } from '../../src/sim/index.js';
import { bearer, signUp } from './auth-client.js';
import type { Backend } from './environment.js';
import type { TestApp } from './test-app.js';
import { startListeningGateway, type ListeningGateway } from './listening-gateway.js';

export const SIM_MODEL = 'sim-llama-3-8b';
export const GENERATION_PATH = '/v1/chat/completions';
/** A fixed `created` keeps the simulator's answers repeatable. */
export { SIM_CREATED } from './listening-gateway.js';

export type ChatGateway = ListeningGateway;

/**
 * A gateway listening on a free port, its VLLM_BASE_URL pointing at a simulator: a new one (from
 * `simulatorOptions`) that close() stops, or `simulator`, which belongs to the caller. It waits
 * until the gateway knows vLLM's models (context checks need them).
 */
export async function startChatGateway(options: {
  backend: Backend;
  environment?: Record<string, string>;
  simulatorOptions?: SimulatorOptions;
  simulator?: Simulator;
  /** A second instance on the first one's database, Redis prefix and JWT secret. */
  sharing?: TestApp;
}): Promise<ChatGateway> {
  const gateway = await startListeningGateway(options);
  try {
    await waitForModels(gateway.app);
  } catch (error) {
    await gateway.close();
    throw error;
  }
  return gateway;
}

/** The gateway learns vLLM's models at start; context checks need them, so tests wait for them. */
async function waitForModels(app: App): Promise<void> {
  const user = await newUser(app);
  await eventually(
    async () => (await app.inject({ method: 'GET', url: '/api/models', headers: bearer(user.token) })).statusCode,
    (status) => status === 200,
  );
}

export interface ChatUser {
  userId: string;
  email: string;
  token: string;
}

export async function newUser(app: App): Promise<ChatUser> {
  const signedIn = await signUp(app);
  return { userId: signedIn.user.id, email: signedIn.email, token: signedIn.tokens.access_token };
}

/** Text no other test writes, to find a test's own requests among what vLLM received. */
export function marker(label = 'marker'): string {
  return `${label}-${randomUUID().slice(0, 8)}`;
}

// --- shapes -------------------------------------------------------------------------------------

export interface ConversationBody {
  id: string;
  title: string;
  model: string | null;
  system_prompt: string | null;
  settings: Record<string, unknown>;
  message_count: number;
  last_message_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface MessageBody {
  id: string;
  conversation_id: string;
  role: string;
  content: string;
  status: 'complete' | 'streaming' | 'interrupted' | 'error';
  status_reason: string | null;
  finish_reason: string | null;
  model: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  ttft_ms: number | null;
  duration_ms: number | null;
  created_at: string;
}

export interface ListBody<T> {
  data: T[];
  next_cursor: string | null;
}

export interface ConversationEvent {
  conversation_id: string | null;
  user_message_id: string | null;
  assistant_message_id: string | null;
  trimmed_messages: number;
}

export interface ChatCompletionBody {
  id: string;
  object: string;
  model: string;
  choices: Array<{ index: number; message: { role: string; content: string }; finish_reason: string | null }>;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
  conversation_id: string | null;
  message_id: string | null;
  trimmed_messages?: number;
}

export const conversationFields = ['created_at', 'id', 'last_message_at', 'message_count', 'model', 'settings', 'system_prompt', 'title', 'updated_at'];

// --- HTTP over the socket ---------------------------------------------------------------------

export interface HttpReply {
  status: number;
  headers: Headers;
  text: string;
}

export async function call(
  gateway: { url: string },
  options: { path: string; method?: 'GET' | 'POST' | 'PUT' | 'DELETE'; token?: string; body?: unknown; headers?: Record<string, string> },
): Promise<HttpReply> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  const response = await fetch(`${gateway.url}${options.path}`, {
    method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
    headers,
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

export function jsonOf<T>(reply: HttpReply): T {
  return JSON.parse(reply.text) as T;
}

/** POST /api/chat/completions, expecting 200. */
export async function completeTurn(
  gateway: { url: string },
  options: { token: string; body: Record<string, unknown>; headers?: Record<string, string> },
): Promise<ChatCompletionBody> {
  const reply = await call(gateway, { path: '/api/chat/completions', token: options.token, body: options.body, ...(options.headers === undefined ? {} : { headers: options.headers }) });
  expect(reply.status, reply.text).toBe(200);
  return jsonOf<ChatCompletionBody>(reply);
}

/** POST /api/chat read to its end, expecting 200 and an event stream. */
export async function streamTurn(
  gateway: { url: string },
  options: { token: string; body: Record<string, unknown>; headers?: Record<string, string> },
): Promise<ChatStream> {
  const reply = await call(gateway, { path: '/api/chat', token: options.token, body: options.body, ...(options.headers === undefined ? {} : { headers: options.headers }) });
  expect(reply.status, reply.text).toBe(200);
  expect(reply.headers.get('content-type') ?? '').toMatch(/^text\/event-stream/);
  return readChatStream(reply.text);
}

/** An error answer: status, the four-field envelope, the code (one of several allowed), the request id. */
export function expectErrorReply(reply: HttpReply, status: number | readonly number[], code: ErrorCode | readonly ErrorCode[]): { message: string; code: ErrorCode } {
  const statuses: readonly number[] = typeof status === 'number' ? [status] : status;
  expect(statuses, reply.text).toContain(reply.status);
  const body = JSON.parse(reply.text) as { error: { message: string; type: string; code: ErrorCode; param: string | null } };
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  const codes: readonly ErrorCode[] = typeof code === 'string' ? [code] : code;
  expect(codes).toContain(body.error.code);
  expect(body.error.type).toBe(errorCatalog[body.error.code].type);
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(reply.headers.get('x-request-id')).toEqual(expect.any(String));
  return { message: body.error.message, code: body.error.code };
}

// --- SSE ----------------------------------------------------------------------------------------

export interface SseEvent {
  event: string | null;
  data: string;
}

/** Frames of an event stream, comments (heartbeats) left out; fails on a frame without data. */
export function parseSse(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  for (const frame of text.split('\n\n')) {
    if (frame === '') continue;
    const lines = frame.split('\n').filter((line) => !line.startsWith(':'));
    if (lines.length === 0) continue;
    let event: string | null = null;
    const data: string[] = [];
    for (const line of lines) {
      if (line.startsWith('event: ')) event = line.slice('event: '.length);
      else if (line.startsWith('data: ')) data.push(line.slice('data: '.length));
      else throw new Error(`unexpected SSE line: ${JSON.stringify(line)}`);
    }
    if (data.length === 0) throw new Error(`SSE frame without data: ${JSON.stringify(frame)}`);
    events.push({ event, data: data.join('\n') });
  }
  return events;
}

export interface ChatStream {
  text: string;
  events: SseEvent[];
  /** The first event's payload, when the first event is `event: conversation`. */
  opening: ConversationEvent | null;
  /** vLLM's chunks, parsed. */
  chunks: Array<Record<string, unknown>>;
  /** `data: {"error": …}` events. */
  errors: Array<{ message: string; code: string }>;
  /** The text of choice 0, the deltas concatenated. */
  content: string;
  finishReason: string | null;
  usage: { prompt_tokens: number; completion_tokens: number } | null;
  /** The last event is `data: [DONE]`. */
  done: boolean;
}

export function readChatStream(text: string): ChatStream {
  const events = parseSse(text);
  const first = events[0];
  const opening = first?.event === 'conversation' ? (JSON.parse(first.data) as ConversationEvent) : null;
  const chunks: Array<Record<string, unknown>> = [];
  const errors: Array<{ message: string; code: string }> = [];
  let content = '';
  let finishReason: string | null = null;
  let usage: ChatStream['usage'] = null;
  for (const event of events) {
    if (event.event !== null || event.data === '[DONE]') continue;
    const parsed = JSON.parse(event.data) as Record<string, unknown>;
    if (typeof parsed.error === 'object' && parsed.error !== null) {
      errors.push(parsed.error as { message: string; code: string });
      continue;
    }
    chunks.push(parsed);
    const choices = parsed.choices as Array<{ index: number; delta?: { content?: string | null }; finish_reason?: string | null }> | undefined;
    for (const choice of choices ?? []) {
      if (choice.index !== 0) continue;
      if (typeof choice.delta?.content === 'string') content += choice.delta.content;
      if (typeof choice.finish_reason === 'string') finishReason = choice.finish_reason;
    }
    if (typeof parsed.usage === 'object' && parsed.usage !== null) usage = parsed.usage as ChatStream['usage'];
  }
  const last = events[events.length - 1];
  return { text, events, opening, chunks, errors, content, finishReason, usage, done: last?.event === null && last.data === '[DONE]' };
}

/** The content of a stream read so far (frames cut mid-way are left for later). */
export function partialContent(text: string): string {
  const complete = text.slice(0, text.lastIndexOf('\n\n') + 2);
  return readChatStream(complete).content;
}

/** Number of vLLM chunks carrying text so far. */
export function contentChunkCount(text: string): number {
  return text.split('\n\n').filter((frame) => frame.startsWith('data: {') && /"content":"[^"]/.test(frame)).length;
}

/** A POST over its own connection, read as it arrives; the test can wait for text or hang up. */
export class OpenStream {
  text = '';
  status: number | null = null;
  readonly ended: Promise<void>;
  private readonly request: ReturnType<typeof httpRequest>;
  private listeners = new Set<() => void>();

  constructor(options: { url: string; path: string; token: string; body: unknown; headers?: Record<string, string> }) {
    const payload = JSON.stringify(options.body);
    this.request = httpRequest(`${options.url}${options.path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(payload),
        authorization: `Bearer ${options.token}`,
        ...options.headers,
      },
      agent: false,
    });
    this.ended = new Promise<void>((resolve) => {
      this.request.on('error', () => resolve());
      this.request.on('close', () => resolve());
      this.request.on('response', (response: IncomingMessage) => {
        this.status = response.statusCode ?? null;
        response.on('data', (chunk: Buffer) => {
          this.text += chunk.toString('utf8');
          for (const listener of this.listeners) listener();
        });
        response.on('error', () => resolve());
        response.on('close', () => resolve());
      });
    });
    this.request.end(payload);
  }

  /** Resolves once `predicate(text so far)` holds; rejects after the timeout with what arrived. */
  waitFor(predicate: (text: string) => boolean, timeoutMs = 5000): Promise<string> {
    if (predicate(this.text)) return Promise.resolve(this.text);
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!predicate(this.text)) return;
        cleanup();
        resolve(this.text);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`stream condition not met within ${timeoutMs} ms; got ${JSON.stringify(this.text.slice(0, 600))}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      void this.ended.then(() => {
        if (this.listeners.has(check)) {
          cleanup();
          if (predicate(this.text)) resolve(this.text);
          else reject(new Error(`stream ended before the condition held; got ${JSON.stringify(this.text.slice(0, 600))}`));
        }
      });
    });
  }

  /** The `event: conversation` payload, once it arrived. */
  async opening(timeoutMs = 5000): Promise<ConversationEvent> {
    const text = await this.waitFor((current) => /^event: conversation\ndata: .*\n\n/.test(current), timeoutMs);
    const opening = readChatStream(text.slice(0, text.indexOf('\n\n') + 2)).opening;
    if (opening === null) throw new Error(`stream does not open with a conversation event: ${text.slice(0, 200)}`);
    return opening;
  }

  /** Waits for the end of the response, failing after the timeout. */
  async finish(timeoutMs = 5000): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`stream did not end within ${timeoutMs} ms; got ${JSON.stringify(this.text.slice(-400))}`)), timeoutMs);
    });
    try {
      await Promise.race([this.ended, timeout]);
    } finally {
      clearTimeout(timer);
    }
    return this.text;
  }

  /** The client hangs up. */
  destroy(): void {
    this.request.destroy();
  }
}

// --- conversations and messages -----------------------------------------------------------------

export async function createConversation(app: App, token: string, body: Record<string, unknown> = {}): Promise<ConversationBody> {
  const response = await app.inject({ method: 'POST', url: '/api/conversations', headers: bearer(token), payload: body });
  expect(response.statusCode, response.body).toBe(201);
  return response.json<ConversationBody>();
}

export async function getConversation(app: App, token: string, id: string): Promise<ConversationBody> {
  const response = await app.inject({ method: 'GET', url: `/api/conversations/${id}`, headers: bearer(token) });
  expect(response.statusCode, response.body).toBe(200);
  return response.json<ConversationBody>();
}

export function messagesRequest(app: App, token: string, id: string, query = ''): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'GET', url: `/api/conversations/${id}/messages${query}`, headers: bearer(token) });
}

/** Every message of a conversation, following the cursor. */
export async function allMessages(app: App, token: string, id: string): Promise<MessageBody[]> {
  const messages: MessageBody[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 50; page++) {
    const response = await messagesRequest(app, token, id, cursor === null ? '?limit=100' : `?limit=100&cursor=${encodeURIComponent(cursor)}`);
    expect(response.statusCode, response.body).toBe(200);
    const body = response.json<ListBody<MessageBody>>();
    messages.push(...body.data);
    cursor = body.next_cursor;
    if (cursor === null) return messages;
  }
  throw new Error('too many pages');
}

/**
 * The messages once none is `streaming` any more. The gateway completes an assistant message just
 * after the client has its answer, so a read right after an answer can come first.
 */
export function settledMessages(app: App, token: string, id: string): Promise<MessageBody[]> {
  return eventually(() => allMessages(app, token, id), (messages) => messages.every((message) => message.status !== 'streaming'));
}

export async function messageById(app: App, token: string, conversationId: string, messageId: string): Promise<MessageBody> {
  const found = (await allMessages(app, token, conversationId)).find((message) => message.id === messageId);
  if (found === undefined) throw new Error(`message ${messageId} is not in conversation ${conversationId}`);
  return found;
}

/** Polls the message until `accept` holds (or the time is up: the last value is returned for the assertions). */
export function messageEventually(
  app: App,
  options: { token: string; conversationId: string; messageId: string; accept: (message: MessageBody) => boolean; timeoutMs?: number },
): Promise<MessageBody> {
  return eventually(() => messageById(app, options.token, options.conversationId, options.messageId), options.accept, options.timeoutMs);
}

export async function conversationCount(app: App, userId: string): Promise<{ conversations: number; messages: number }> {
  const db = app.gateway.database.db;
  const conversations = await db.selectFrom('conversations').select((eb) => eb.fn.countAll<number>().as('count')).where('user_id', '=', userId).executeTakeFirstOrThrow();
  const messages = await db
    .selectFrom('messages')
    .innerJoin('conversations', 'conversations.id', 'messages.conversation_id')
    .select((eb) => eb.fn.countAll<number>().as('count'))
    .where('conversations.user_id', '=', userId)
    .executeTakeFirstOrThrow();
  return { conversations: Number(conversations.count), messages: Number(messages.count) };
}

// --- what vLLM received -------------------------------------------------------------------------

export type GenerationRequest = ReceivedRequest & { body: Record<string, unknown> & { messages: Array<{ role: string; content: unknown }> } };

/** The generation requests the simulator received whose body contains `needle`. */
export function generationRequestsWith(simulator: Simulator, needle: string): GenerationRequest[] {
  return simulator.received.filter((entry) => entry.path === GENERATION_PATH && entry.rawBody.includes(needle)) as GenerationRequest[];
}

/** The one generation request whose body contains `needle`. */
export function generationRequestWith(simulator: Simulator, needle: string): GenerationRequest {
  const found = generationRequestsWith(simulator, needle);
  expect(found, `generation requests containing ${needle}`).toHaveLength(1);
  return found[0]!;
}

/** What a full, uninterrupted run of the same upstream request produces (on a simulator without delays). */
export async function fullRunText(reference: Simulator, upstream: GenerationRequest): Promise<string> {
  const body: Record<string, unknown> = { ...upstream.body, stream: false };
  delete body.sim_fault;
  delete body.stream_options;
  const response = await fetch(`${reference.url}${GENERATION_PATH}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(response.status).toBe(200);
  const completion = (await response.json()) as { choices: Array<{ message: { content: string } }> };
  return completion.choices[0]!.message.content;
}

// --- time ---------------------------------------------------------------------------------------

export function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

/** Polls `read` until `accept` holds or the time is up; returns the last value either way. */
export async function eventually<T>(read: () => Promise<T>, accept: (value: T) => boolean, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (accept(value) || Date.now() > deadline) return value;
    await sleep(25);
  }
}
