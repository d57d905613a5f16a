// PostgreSQL cannot store U+0000 in text. What comes from outside and must be kept anyway — vLLM's
// answer, a caller's model name in the usage log — is stored without it rather than not at all.

export function storableText(text: string): string {
  return text.includes('\u0000') ? text.replaceAll('\u0000', '') : text;
}

export function storableOptionalText(text: string | null): string | null {
  return text === null ? null : storableText(text);
}
