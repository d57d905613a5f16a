// Decides, before the first token, everything one choice will generate: its words, where it ends
// and why. Deterministic in (seed, prompt, choice index), so transcripts can be compared byte for byte.

export type ChoiceFinishReason = 'stop' | 'length';

export interface ChoicePlan {
  /** The choice's `index` in the response. */
  index: number;
  promptTokenCount: number;
  /** The text each generated token adds; '' for the end-of-sequence token and for text cut by a stop string. */
  tokenTexts: string[];
  text: string;
  finishReason: ChoiceFinishReason;
  /** The matched stop string, else null (as vLLM: null for EOS and for length). */
  stopReason: string | null;
}

export interface PlanChoiceOptions {
  index: number;
  promptText: string;
  promptTokenCount: number;
  seed: number | null;
  /** Most tokens this choice may generate: max_tokens, or what is left of the context window. */
  tokenLimit: number;
  stop: readonly string[];
  minTokens: number;
  ignoreEos: boolean;
}

// Multibyte words make sure UTF-8 characters (2, 3 and 4 bytes) cross chunk and buffer boundaries.
const VOCABULARY = [
  'the', 'a', 'model', 'answer', 'is', 'that', 'we', 'can', 'see', 'it', 'works', 'well',
  'with', 'some', 'tokens', 'and', 'then', 'more', 'text', 'here', 'because', 'of', 'this',
  'simple', 'test', 'stream', 'gateway', 'server', 'request', 'reply', 'quickly', 'today',
  'café', 'naïve', 'über', 'façade', 'résumé', 'jalapeño', '日本語', '東京', 'こんにちは',
  'Ελλάδα', 'привет', '🙂', '🚀', 'ok', 'yes', 'no', 'maybe', 'also', 'again', 'done',
];
const NATURAL_LENGTH_MIN = 8;
const NATURAL_LENGTH_MAX = 40;

export function planChoice(options: PlanChoiceOptions): ChoicePlan {
  const random = createRandom(`${options.seed ?? 'unseeded'}|${options.index}|${options.promptText}`);
  const naturalLength = NATURAL_LENGTH_MIN + Math.floor(random() * (NATURAL_LENGTH_MAX - NATURAL_LENGTH_MIN + 1));
  // The end-of-sequence token is the last generated token: it counts in completion_tokens but adds no text.
  const endOfSequenceAt = options.ignoreEos ? Infinity : Math.max(naturalLength, options.minTokens + 1) - 1;
  const longestStop = options.stop.reduce((longest, stop) => Math.max(longest, stop.length), 0);
  const rawTexts: string[] = [];
  let text = '';
  for (let tokenIndex = 0; tokenIndex < options.tokenLimit; tokenIndex++) {
    if (tokenIndex === endOfSequenceAt) {
      rawTexts.push('');
      return finishedPlan({ options, rawTexts, text, finishReason: 'stop', stopReason: null });
    }
    const word = ` ${VOCABULARY[Math.floor(random() * VOCABULARY.length)] ?? 'ok'}`;
    const searchFrom = Math.max(0, text.length - longestStop + 1);
    text += word;
    rawTexts.push(word);
    const match = findStop(text, options.stop, searchFrom);
    if (match !== null) {
      return finishedPlan({ options, rawTexts, text: text.slice(0, match.position), finishReason: 'stop', stopReason: match.stop });
    }
  }
  return finishedPlan({ options, rawTexts, text, finishReason: 'length', stopReason: null });
}

function findStop(text: string, stops: readonly string[], searchFrom: number): { stop: string; position: number } | null {
  // vLLM checks the stop strings in the order given and stops at the first one found.
  for (const stop of stops) {
    if (stop === '') continue;
    const position = text.indexOf(stop, searchFrom);
    if (position !== -1) return { stop, position };
  }
  return null;
}

function finishedPlan(parts: {
  options: PlanChoiceOptions;
  rawTexts: string[];
  text: string;
  finishReason: ChoiceFinishReason;
  stopReason: string | null;
}): ChoicePlan {
  // A stop string is never sent: each token keeps only the part of its text before the match.
  const tokenTexts: string[] = [];
  let offset = 0;
  for (const raw of parts.rawTexts) {
    const start = Math.min(offset, parts.text.length);
    const end = Math.min(offset + raw.length, parts.text.length);
    tokenTexts.push(parts.text.slice(start, end));
    offset += raw.length;
  }
  return {
    index: parts.options.index,
    promptTokenCount: parts.options.promptTokenCount,
    tokenTexts,
    text: parts.text,
    finishReason: parts.finishReason,
    stopReason: parts.stopReason,
  };
}

/** FNV-1a to seed mulberry32: small, fast and the same on every platform. */
function createRandom(seedText: string): () => number {
  let hash = 0x811c9dc5;
  for (let position = 0; position < seedText.length; position++) {
    hash ^= seedText.charCodeAt(position);
    hash = Math.imul(hash, 0x01000193);
  }
  let state = hash >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let mixed = Math.imul(state ^ (state >>> 15), 1 | state);
    mixed = (mixed + Math.imul(mixed ^ (mixed >>> 7), 61 | mixed)) ^ mixed;
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };
}
