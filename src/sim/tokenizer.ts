// A tiny reversible tokenizer: the UTF-8 bytes of a text in groups of three, each group one id
// that also records its length, so /detokenize gives back the exact text and counts are cheap.

const GROUP_BYTES = 3;
const GROUP_RANGE = 2 ** 24;
const utf8Decoder = new TextDecoder('utf-8');

/** Same as `encodeText(text).length`, without building the ids. */
export function countTokens(text: string): number {
  return Math.ceil(Buffer.byteLength(text, 'utf8') / GROUP_BYTES);
}

/** id = (groupLength - 1) * 2^24 + the group's bytes read as a big-endian number. */
export function encodeText(text: string): number[] {
  const bytes = Buffer.from(text, 'utf8');
  const tokens: number[] = [];
  for (let start = 0; start < bytes.length; start += GROUP_BYTES) {
    const end = Math.min(start + GROUP_BYTES, bytes.length);
    let value = 0;
    for (let position = start; position < end; position++) value = value * 256 + (bytes[position] ?? 0);
    tokens.push((end - start - 1) * GROUP_RANGE + value);
  }
  return tokens;
}

/** The text of `tokens`, or null when an id could not have come from `encodeText`. */
export function decodeTokens(tokens: readonly number[]): string | null {
  const bytes = Buffer.alloc(tokens.length * GROUP_BYTES);
  let length = 0;
  for (const token of tokens) {
    if (!Number.isInteger(token) || token < 0 || token >= GROUP_BYTES * GROUP_RANGE) return null;
    const groupLength = Math.floor(token / GROUP_RANGE) + 1;
    const value = token % GROUP_RANGE;
    if (value >= 256 ** groupLength) return null;
    for (let shift = groupLength - 1; shift >= 0; shift--) {
      bytes[length++] = Math.floor(value / 256 ** shift) % 256;
    }
  }
  return utf8Decoder.decode(bytes.subarray(0, length));
}
