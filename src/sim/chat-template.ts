// Turns chat messages into the prompt text the model "sees", the way a chat template does, so
// chat requests and POST /tokenize count the same prompt tokens.

export interface ChatMessage {
  role: string;
  content: unknown;
  tool_calls?: unknown;
}

/** `<|role|>\ncontent\n` per message, then `<|assistant|>\n` when a generation prompt is wanted. */
export function renderChatPrompt(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
  let prompt = '';
  for (const message of messages) {
    prompt += `<|${message.role}|>\n${contentText(message.content)}`;
    if (message.tool_calls !== undefined && message.tool_calls !== null) {
      prompt += JSON.stringify(message.tool_calls);
    }
    prompt += '\n';
  }
  return addGenerationPrompt ? `${prompt}<|assistant|>\n` : prompt;
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map(partText).join('\n');
}

function partText(part: unknown): string {
  if (typeof part === 'string') return part;
  if (typeof part !== 'object' || part === null) return '';
  const record = part as Record<string, unknown>;
  if (typeof record.text === 'string') return record.text;
  return typeof record.type === 'string' ? `<|${record.type}|>` : '';
}
