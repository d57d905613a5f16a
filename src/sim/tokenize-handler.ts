// POST /tokenize and /detokenize, with the same tokenizer and chat template the generation
// endpoints use, so `count` equals the `usage.prompt_tokens` of the same messages.
import type { ServerResponse } from 'node:http';
import { fail, optionalBoolean, optionalString, readFields, type JsonObject } from './body-fields.js';
import { renderChatPrompt } from './chat-template.js';
import { badRequest, modelNotFound } from './errors.js';
import { readMessages } from './generation-request.js';
import { sendError, sendJson } from './http-io.js';
import type { SimulatorRuntime } from './runtime.js';
import { decodeTokens, encodeText } from './tokenizer.js';

export function handleTokenize(runtime: SimulatorRuntime, response: ServerResponse, body: JsonObject): void {
  const errorFormat = runtime.settings.errorFormat;
  const fields = readFields(() => ({
    model: optionalString(body, 'model'),
    text: promptTextOf(body),
  }));
  if (!fields.ok) return sendError(response, fields.error, errorFormat);
  const model = runtime.models.resolve(fields.value.model);
  if (model === null) return sendError(response, modelNotFound(fields.value.model ?? ''), errorFormat);
  const tokens = encodeText(fields.value.text);
  sendJson(
    response,
    200,
    JSON.stringify({ count: tokens.length, max_model_len: model.contextLength, tokens, token_strs: null }),
  );
}

export function handleDetokenize(runtime: SimulatorRuntime, response: ServerResponse, body: JsonObject): void {
  const errorFormat = runtime.settings.errorFormat;
  const fields = readFields(() => ({ model: optionalString(body, 'model'), tokens: tokenListOf(body) }));
  if (!fields.ok) return sendError(response, fields.error, errorFormat);
  const model = runtime.models.resolve(fields.value.model);
  if (model === null) return sendError(response, modelNotFound(fields.value.model ?? ''), errorFormat);
  const prompt = decodeTokens(fields.value.tokens);
  if (prompt === null) return sendError(response, badRequest('Token id out of vocabulary.', 'tokens'), errorFormat);
  sendJson(response, 200, JSON.stringify({ prompt }));
}

/** `messages` (rendered with the chat template, generation prompt on by default) or `prompt`. */
function promptTextOf(body: JsonObject): string {
  if (body.messages !== undefined) {
    return renderChatPrompt(readMessages(body), optionalBoolean(body, 'add_generation_prompt') ?? true);
  }
  const prompt = optionalString(body, 'prompt');
  if (prompt === null) return fail('prompt', 'missing', 'Field required', null);
  return prompt;
}

function tokenListOf(body: JsonObject): number[] {
  const tokens = body.tokens;
  if (!Array.isArray(tokens) || !tokens.every((token) => typeof token === 'number' && Number.isInteger(token))) {
    return fail('tokens', 'list_type', 'Input should be a valid list of integers', tokens ?? null);
  }
  return tokens as number[];
}
