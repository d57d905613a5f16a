// vLLM writes every token of a stream as the same event with another text: the same id, created,
// model and keys in the same order (the protocol file). Once one such event has been parsed in full
// and found to be a plain token — one choice, index 0, its text and nothing else, no finish reason,
// no usage, no error — a later event whose bytes are identical around one valid JSON string *is*
// that object with another text, so it is read without decoding and parsing the whole event, the
// relay's largest cost per event. Anything else (a finish, usage, an error, logprobs, another
// choice, a changed key) differs in those bytes and takes the full parse.

/** Where a plain token's text sits: a chat delta's only key, or a completion choice's `text`. */
const chatTextMarker = Buffer.from('"delta":{"content":"');
const completionTextMarker = Buffer.from('"text":"');

const quote = 0x22;
const backslash = 0x5c;

export interface TemplateToken {
  /** The bytes of the JSON string's contents, between its quotes. */
  start: number;
  end: number;
  /** True when the string holds an escape, so its bytes are not its text. */
  escaped: boolean;
}

export class TokenChunkTemplate {
  private prefix: Buffer | null = null;
  private suffix: Buffer | null = null;

  /**
   * Takes a one-line event that was parsed in full as the template, when it is a plain token whose
   * text sits at a marker found exactly once in its bytes.
   */
  learn(event: Buffer, chunk: Record<string, unknown>): void {
    const text = plainTokenText(chunk);
    if (text === null) return;
    const marker = chunk.object === 'text_completion' ? completionTextMarker : chatTextMarker;
    const at = event.indexOf(marker);
    if (at === -1 || event.indexOf(marker, at + 1) !== -1) return;
    const start = at + marker.length;
    const token = readJsonString(event, start);
    if (token === null || decodeText(event, token) !== text) return;
    this.prefix = Buffer.from(event.subarray(0, start));
    this.suffix = Buffer.from(event.subarray(token.end));
  }

  /** The token's text position when the event is the template with another text, else null. */
  match(event: Buffer): TemplateToken | null {
    const { prefix, suffix } = this;
    if (prefix === null || suffix === null || event.length < prefix.length + suffix.length) return null;
    if (event.compare(prefix, 0, prefix.length, 0, prefix.length) !== 0) return null;
    const token = readJsonString(event, prefix.length);
    if (token === null || event.length - token.end !== suffix.length) return null;
    return event.compare(suffix, 0, suffix.length, token.end) === 0 ? token : null;
  }
}

export function decodeText(event: Buffer, token: TemplateToken): string {
  if (!token.escaped) return event.toString('utf8', token.start, token.end);
  return JSON.parse(event.toString('utf8', token.start - 1, token.end + 1)) as string;
}

/** A chat chunk whose one choice carries only `delta.content`, or a completion's only `text`; else null. */
function plainTokenText(chunk: Record<string, unknown>): string | null {
  if (chunk.error !== undefined || (chunk.usage !== undefined && chunk.usage !== null)) return null;
  const choices = chunk.choices;
  if (!Array.isArray(choices) || choices.length !== 1) return null;
  const choice = choices[0] as Record<string, unknown>;
  if (typeof choice !== 'object' || choice === null || choice.index !== 0) return null;
  if (choice.finish_reason !== null && choice.finish_reason !== undefined) return null;
  if (chunk.object === 'text_completion') return choice.delta === undefined && typeof choice.text === 'string' ? choice.text : null;
  if (choice.text !== undefined) return null;
  const delta = choice.delta as Record<string, unknown> | undefined;
  if (typeof delta !== 'object' || delta === null) return null;
  const keys = Object.keys(delta);
  return keys.length === 1 && keys[0] === 'content' && typeof delta.content === 'string' ? delta.content : null;
}

/**
 * Reads the JSON string whose contents start at `start` (just after its opening quote): where its
 * contents end (at the closing quote), or null when the bytes are not a valid JSON string — a raw
 * control character (a line break included, so the event stays one line), a bad escape, no end.
 */
function readJsonString(bytes: Buffer, start: number): TemplateToken | null {
  let escaped = false;
  for (let index = start; index < bytes.length; index += 1) {
    const byte = bytes[index] ?? 0;
    if (byte === quote) return { start, end: index, escaped };
    if (byte < 0x20) return null;
    if (byte !== backslash) continue;
    escaped = true;
    const next = bytes[index + 1];
    if (next === 0x75 /* u */) {
      for (let digit = index + 2; digit < index + 6; digit += 1) if (!isHexDigit(bytes[digit])) return null;
      index += 5;
    } else if (isSimpleEscape(next)) {
      index += 1;
    } else {
      return null;
    }
  }
  return null;
}

function isSimpleEscape(byte: number | undefined): boolean {
  // " \ / b f n r t
  return byte === 0x22 || byte === 0x5c || byte === 0x2f || byte === 0x62 || byte === 0x66 || byte === 0x6e || byte === 0x72 || byte === 0x74;
}

function isHexDigit(byte: number | undefined): boolean {
  if (byte === undefined) return false;
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
}
