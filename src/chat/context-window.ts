// Fits a conversation into the model's context window before it is sent. A prompt whose byte count
// (a bound no tokenizer exceeds) fits is sent as it is; otherwise it is counted by vLLM's own
// tokenizer (POST /tokenize) or, when that is unavailable, estimated at four characters per token
// plus a few per message for the chat template. The oldest history turns are dropped first;
// the system prompt and the new messages are never dropped — if even they do not fit, it is a 400.
import { GatewayError } from '../errors.js';

export interface ChatMessage {
  role: string;
  content?: unknown;
  [field: string]: unknown;
}

const templateTokensPerMessage = 4;

export function estimateTokens(messages: ChatMessage[]): number {
  let total = 0;
  for (const message of messages) {
    const content = typeof message.content === 'string' ? message.content : JSON.stringify(message.content ?? '');
    total += Math.ceil(content.length / 4) + templateTokensPerMessage;
  }
  return total;
}

/** Chat templates add role markers per message and some a preamble (a default system prompt): bounded generously. */
const templateTokensPerMessageAtMost = 16;
const templatePreambleTokensAtMost = 512;

/**
 * A count no real tokenizer can exceed for text-only messages: byte-level BPE, and SentencePiece
 * with byte fallback, make at most one token per UTF-8 byte. Null when a message is more than a
 * role and text (an image, tool calls: what the template makes of them its bytes do not bound).
 */
export function tokenUpperBound(messages: ChatMessage[]): number | null {
  let total = templatePreambleTokensAtMost;
  for (const message of messages) {
    if (typeof message.content !== 'string') return null;
    // Anything but role and text (tool calls, a name, reasoning) is rendered by the template too.
    for (const field in message) if (field !== 'role' && field !== 'content') return null;
    total += Buffer.byteLength(message.content, 'utf8') + templateTokensPerMessageAtMost;
  }
  return total;
}

export interface FitInput {
  /** System prompt (if any), then history, then the new messages. */
  leading: ChatMessage[];
  history: ChatMessage[];
  newMessages: ChatMessage[];
  maxModelLength: number | null;
  /** Tokens the answer may take; the prompt must leave room for them. */
  reservedForAnswer: number;
  countTokens: (messages: ChatMessage[]) => Promise<number | null>;
}

export interface FitResult {
  messages: ChatMessage[];
  droppedMessages: number;
  promptTokens: number | null;
}

export async function fitToContext(input: FitInput): Promise<FitResult> {
  const assemble = (history: ChatMessage[]) => [...input.leading, ...history, ...input.newMessages];
  if (input.maxModelLength === null) return { messages: assemble(input.history), droppedMessages: 0, promptTokens: null };
  const budget = input.maxModelLength - input.reservedForAnswer;
  const count = async (messages: ChatMessage[]) => (await input.countTokens(messages)) ?? estimateTokens(messages);
  // Most turns fit by far: then vLLM's tokenizer is not asked, and the first token comes a round trip sooner.
  const upperBound = tokenUpperBound(assemble(input.history));
  if (upperBound !== null && upperBound <= budget) return { messages: assemble(input.history), droppedMessages: 0, promptTokens: null };

  let history = input.history;
  let tokens = await count(assemble(history));
  // Each pass drops what the estimate says is needed, then asks the real count again.
  for (let pass = 0; tokens > budget && history.length > 0 && pass < 8; pass += 1) {
    let excess = tokens - budget;
    let drop = 0;
    while (drop < history.length && excess > 0) {
      excess -= estimateTokens(history.slice(drop, drop + 1));
      drop += 1;
    }
    history = dropWholeTurns(history, Math.max(drop, 1));
    tokens = await count(assemble(history));
  }
  while (tokens > budget && history.length > 0) {
    history = dropWholeTurns(history, 1);
    tokens = await count(assemble(history));
  }
  if (tokens > budget) {
    throw new GatewayError(
      'context_length_exceeded',
      `The new message needs ${tokens} tokens with the system prompt, but the model's context is ${input.maxModelLength} tokens` +
        (input.reservedForAnswer > 0 ? ` with ${input.reservedForAnswer} reserved for the answer` : ''),
      { param: 'messages' },
    );
  }
  return { messages: assemble(history), droppedMessages: input.history.length - history.length, promptTokens: tokens };
}

/**
 * Drops at least `count` messages from the start, then on to the next user message: an answer is
 * never sent without the question it answered (and chat templates that require user/assistant
 * alternation stay happy).
 */
function dropWholeTurns(history: ChatMessage[], count: number): ChatMessage[] {
  let start = Math.min(count, history.length);
  while (start < history.length && history[start]?.role !== 'user') start += 1;
  return history.slice(start);
}
