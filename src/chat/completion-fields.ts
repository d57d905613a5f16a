// The few fields the gateway reads from vLLM's non-streaming answer; anything unexpected reads as absent.

export function parseJsonObject(bytes: Buffer): Record<string, unknown> | null {
  try {
    const parsed: unknown = JSON.parse(bytes.toString('utf8'));
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function firstChoice(completion: Record<string, unknown> | null): Record<string, unknown> | null {
  const choices = completion?.choices;
  return Array.isArray(choices) && typeof choices[0] === 'object' && choices[0] !== null ? (choices[0] as Record<string, unknown>) : null;
}

export function firstFinishReason(completion: Record<string, unknown> | null): string | null {
  const reason = firstChoice(completion)?.finish_reason;
  return typeof reason === 'string' ? reason : null;
}

export function firstMessageContent(completion: Record<string, unknown> | null): string {
  const choice = firstChoice(completion);
  const message = choice?.message as { content?: unknown } | undefined;
  if (typeof message?.content === 'string') return message.content;
  return typeof choice?.text === 'string' ? choice.text : '';
}
