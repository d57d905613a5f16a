// Reads each relayed SSE event on the side — never changing it — to learn what the stream carried:
// usage (the usage-only chunk, or cumulative usage on every chunk), finish reasons, vLLM's own
// error events, malformed events, and the text, for callers that store it. A stream's plain token
// events, all alike but for their text, are read from their bytes (token-chunk-template).
import { decodeText, TokenChunkTemplate } from './token-chunk-template.js';

export interface TokenUsage {
  prompt_tokens: number;
  completion_tokens: number;
}

export type EventKind = 'data' | 'usage_only' | 'error' | 'done' | 'comment' | 'malformed';

export class StreamObserver {
  usage: TokenUsage | null = null;
  finishReason: string | null = null;
  model: string | null = null;
  upstreamError: { message: string } | null = null;
  /** Events that carried generated output, per choice: vLLM sends about one token per event. */
  outputEvents = 0;
  private readonly textParts: string[] = [];
  private readonly tokenTemplate = new TokenChunkTemplate();

  constructor(private readonly options: { collectText: boolean }) {}

  get text(): string {
    return this.textParts.join('');
  }

  inspect(event: Buffer): EventKind {
    const token = this.tokenTemplate.match(event);
    if (token !== null) {
      if (token.end > token.start) {
        this.outputEvents += 1;
        if (this.options.collectText) this.textParts.push(decodeText(event, token));
      }
      return 'data';
    }
    const singleLine = singleDataLineOf(event);
    const data = singleLine ?? dataOf(event.toString('utf8'));
    if (data === null) return 'comment';
    if (data === '[DONE]') return 'done';
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      return 'malformed';
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) return 'malformed';
    const chunk = json as Record<string, unknown>;
    if (chunk.error !== undefined) {
      const message: unknown = typeof chunk.error === 'object' && chunk.error !== null ? (chunk.error as Record<string, unknown>).message : chunk.error;
      this.upstreamError = { message: typeof message === 'string' ? message : 'vLLM reported an error' };
      return 'error';
    }
    if (typeof chunk.model === 'string') this.model ??= chunk.model;
    const usage = readUsage(chunk.usage);
    if (usage !== null) this.usage = usage;
    const choices = Array.isArray(chunk.choices) ? (chunk.choices as Array<Record<string, unknown>>) : [];
    if (choices.length === 0 && usage !== null) return 'usage_only';
    for (const choice of choices) this.observeChoice(choice);
    if (singleLine !== undefined) this.tokenTemplate.learn(event, chunk);
    return 'data';
  }

  private observeChoice(choice: Record<string, unknown>): void {
    if (typeof choice.finish_reason === 'string' && (choice.index === 0 || choice.index === undefined)) this.finishReason = choice.finish_reason;
    const delta = choice.delta as Record<string, unknown> | undefined;
    const text = typeof choice.text === 'string' ? choice.text : typeof delta?.content === 'string' ? delta.content : '';
    const carriesOutput = text !== '' || typeof delta?.reasoning === 'string' || typeof delta?.reasoning_content === 'string' || Array.isArray(delta?.tool_calls);
    if (carriesOutput) this.outputEvents += 1;
    if (this.options.collectText && text !== '' && (choice.index === 0 || choice.index === undefined)) this.textParts.push(text);
  }
}

const singleLinePrefix = Buffer.from('data: ');

/**
 * The common case without splitting lines: vLLM's events are one `data: …` line and a blank line
 * (LF only). Anything else (several lines, CR, comments) returns undefined for the general path.
 */
function singleDataLineOf(event: Buffer): string | undefined {
  const end = event.length - 2;
  if (end < singleLinePrefix.length || event[end] !== 0x0a || event[end + 1] !== 0x0a) return undefined;
  if (event.compare(singleLinePrefix, 0, singleLinePrefix.length, 0, singleLinePrefix.length) !== 0) return undefined;
  const firstLineEnd = event.indexOf(0x0a, singleLinePrefix.length);
  if (firstLineEnd !== end || event.indexOf(0x0d, singleLinePrefix.length) !== -1) return undefined;
  return event.toString('utf8', singleLinePrefix.length, end);
}

/** The joined `data:` lines of one event, or null when it has none (a comment). */
function dataOf(event: string): string | null {
  let data: string | null = null;
  for (const line of event.split(/\r\n|\r|\n/)) {
    if (!line.startsWith('data:')) continue;
    const value = line.charCodeAt(5) === 0x20 ? line.slice(6) : line.slice(5);
    data = data === null ? value : `${data}\n${value}`;
  }
  return data;
}

export function readUsage(value: unknown): TokenUsage | null {
  if (typeof value !== 'object' || value === null) return null;
  const usage = value as Record<string, unknown>;
  // Token counts are whole and never negative; anything else is not a usage we can charge.
  if (!isTokenCount(usage.prompt_tokens) || !isTokenCount(usage.completion_tokens)) return null;
  return { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens };
}

function isTokenCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * A rough prompt size for requests vLLM never reported usage for (aborted streams): about four
 * characters per token, the usual rule of thumb for English with BPE tokenizers.
 */
export function estimatePromptTokens(body: Record<string, unknown>): number {
  let characters = 0;
  if (Array.isArray(body.messages)) {
    for (const message of body.messages as Array<{ content?: unknown }>) {
      characters += typeof message.content === 'string' ? message.content.length : JSON.stringify(message.content ?? '').length;
    }
  } else if (body.prompt !== undefined) {
    characters = typeof body.prompt === 'string' ? body.prompt.length : JSON.stringify(body.prompt).length;
  }
  return Math.ceil(characters / 4);
}
