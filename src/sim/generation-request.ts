// Parses the body of /v1/chat/completions and /v1/completions into the parameters the simulator
// honours, rejecting what vLLM rejects; unknown fields are ignored, as vLLM does.
import type { ChatMessage } from './chat-template.js';
import {
  fail,
  isJsonObject,
  optionalBoolean,
  optionalNumber,
  optionalObject,
  optionalString,
  optionalStringList,
  readFields,
  type FieldsResult,
  type JsonObject,
} from './body-fields.js';
import { badRequest } from './errors.js';

export type GenerationKind = 'chat' | 'completion';

export interface GenerationParameters {
  model: string | null;
  stream: boolean;
  includeUsage: boolean;
  /** Only with include_usage, as in vLLM's `should_include_usage`. */
  continuousUsage: boolean;
  choiceCount: number;
  maxTokens: number | null;
  maxTokensParam: 'max_tokens' | 'max_completion_tokens';
  seed: number | null;
  stop: string[];
  minTokens: number;
  ignoreEos: boolean;
  requestId: string | null;
}

export type ParsedGeneration =
  | (GenerationParameters & { kind: 'chat'; messages: ChatMessage[]; addGenerationPrompt: boolean })
  | (GenerationParameters & { kind: 'completion'; prompts: Array<string | number[]> });

/** Seeds are 64-bit integers in vLLM. */
const INT64_LIMIT = 2 ** 63;

export function parseGenerationRequest(kind: GenerationKind, body: JsonObject): FieldsResult<ParsedGeneration> {
  const parsed = readFields((): ParsedGeneration => {
    const parameters = readParameters(body, kind);
    if (kind === 'chat') {
      const addGenerationPrompt = optionalBoolean(body, 'add_generation_prompt') ?? true;
      return { ...parameters, kind, messages: readMessages(body), addGenerationPrompt };
    }
    return { ...parameters, kind, prompts: readPrompts(body) };
  });
  if (!parsed.ok) return parsed;
  // vLLM's model validator: truthy stream_options (so not `{}`) need stream=true.
  const streamOptions = body.stream_options;
  if (isJsonObject(streamOptions) && Object.keys(streamOptions).length > 0 && !parsed.value.stream) {
    return { ok: false, error: badRequest('Stream options can only be defined when `stream=True`.', 'stream_options') };
  }
  return parsed;
}

function readParameters(body: JsonObject, kind: GenerationKind): GenerationParameters {
  const streamOptions = optionalObject(body, 'stream_options') ?? {};
  const includeUsage = readStreamOption(streamOptions, 'include_usage');
  const continuousUsage = readStreamOption(streamOptions, 'continuous_usage_stats');
  optionalNumber(body, 'temperature', { min: 0 });
  optionalNumber(body, 'top_p', { greaterThan: 0, max: 1 });
  optionalNumber(body, 'top_k', { integer: true, min: -1 });
  optionalNumber(body, 'presence_penalty', { min: -2, max: 2 });
  optionalNumber(body, 'frequency_penalty', { min: -2, max: 2 });
  const maxTokens = optionalNumber(body, 'max_tokens', { integer: true, min: 1 });
  const maxCompletionTokens = kind === 'chat' ? optionalNumber(body, 'max_completion_tokens', { integer: true, min: 1 }) : null;
  return {
    model: optionalString(body, 'model'),
    stream: optionalBoolean(body, 'stream') ?? false,
    includeUsage,
    continuousUsage: includeUsage && continuousUsage,
    choiceCount: optionalNumber(body, 'n', { integer: true, min: 1, max: 128 }) ?? 1,
    maxTokens: maxCompletionTokens ?? maxTokens,
    maxTokensParam: maxCompletionTokens !== null ? 'max_completion_tokens' : 'max_tokens',
    seed: optionalNumber(body, 'seed', { integer: true, min: -INT64_LIMIT, lessThan: INT64_LIMIT }),
    stop: optionalStringList(body, 'stop'),
    minTokens: optionalNumber(body, 'min_tokens', { integer: true, min: 0 }) ?? 0,
    ignoreEos: optionalBoolean(body, 'ignore_eos') ?? false,
    requestId: optionalString(body, 'request_id'),
  };
}

function readStreamOption(streamOptions: JsonObject, key: string): boolean {
  const value = streamOptions[key];
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') fail(`stream_options.${key}`, 'bool_type', 'Input should be a valid boolean', value);
  return value;
}

/** The `messages` of a chat request (also read by POST /tokenize, so both render the same prompt). */
export function readMessages(body: JsonObject): ChatMessage[] {
  const messages = body.messages;
  if (messages === undefined) fail('messages', 'missing', 'Field required', null);
  if (!Array.isArray(messages)) fail('messages', 'list_type', 'Input should be a valid list', messages);
  return messages.map((message: unknown, position) => {
    if (!isJsonObject(message)) fail(`messages.${position}`, 'model_type', 'Input should be a valid dictionary', message);
    if (typeof message.role !== 'string') {
      fail(`messages.${position}.role`, 'string_type', 'Input should be a valid string', message.role ?? null);
    }
    const content = message.content;
    if (content !== undefined && content !== null && typeof content !== 'string' && !Array.isArray(content)) {
      fail(`messages.${position}.content`, 'string_type', 'Input should be a valid string or a list of content parts', content);
    }
    return { role: message.role, content, tool_calls: message.tool_calls };
  });
}

/** A string, a list of strings, a list of token ids, or a list of lists of token ids. */
function readPrompts(body: JsonObject): Array<string | number[]> {
  const prompt = body.prompt;
  if (prompt === undefined || prompt === null || prompt === '') {
    fail('prompt', 'value_error', 'Value error, Either prompt or prompt_embeds must be provided and non-empty.', prompt ?? null);
  }
  if (typeof prompt === 'string') return [prompt];
  if (Array.isArray(prompt) && prompt.length > 0) {
    if (prompt.every((item) => typeof item === 'string')) return prompt;
    if (prompt.every(isTokenId)) return [prompt as number[]];
    if (prompt.every((item) => Array.isArray(item) && item.length > 0 && item.every(isTokenId))) return prompt as number[][];
  }
  return fail('prompt', 'union_type', 'Input should be a string, a list of strings or a list of token ids', prompt);
}

function isTokenId(value: unknown): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}
