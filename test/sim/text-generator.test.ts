// The planner behind every simulated answer: natural ends, limits and stop strings that span tokens.
import { describe, expect, it } from 'vitest';
import { planChoice, type PlanChoiceOptions } from '../../src/sim/text-generator.js';

const base: PlanChoiceOptions = {
  index: 0,
  promptText: '<|user|>\nhello\n<|assistant|>\n',
  promptTokenCount: 10,
  seed: 1,
  tokenLimit: 1000,
  stop: [],
  minTokens: 0,
  ignoreEos: false,
};

describe('planChoice', () => {
  it('ends naturally with an empty end-of-sequence token after 8 to 40 tokens', () => {
    const plan = planChoice(base);
    expect(plan.finishReason).toBe('stop');
    expect(plan.stopReason).toBeNull();
    expect(plan.tokenTexts.length).toBeGreaterThanOrEqual(8);
    expect(plan.tokenTexts.length).toBeLessThanOrEqual(40);
    expect(plan.tokenTexts.at(-1)).toBe('');
    expect(plan.tokenTexts.join('')).toBe(plan.text);
  });

  it('stops at the token limit with finish reason length', () => {
    const plan = planChoice({ ...base, tokenLimit: 3 });
    expect(plan).toMatchObject({ finishReason: 'length', stopReason: null });
    expect(plan.tokenTexts).toHaveLength(3);
    expect(plan.tokenTexts.every((text) => text.startsWith(' '))).toBe(true);
  });

  it('cuts a stop string spanning two tokens out of every chunk, counting the token that completed it', () => {
    const free = planChoice({ ...base, ignoreEos: true, tokenLimit: 20 });
    const second = free.tokenTexts[1]!;
    const third = free.tokenTexts[2]!;
    // The end of token 2 plus the start of token 3.
    const stop = `${second.slice(-2)}${third.slice(0, 2)}`;
    const cut = free.text.indexOf(stop);
    const plan = planChoice({ ...base, ignoreEos: true, tokenLimit: 20, stop: [stop] });
    expect(plan).toMatchObject({ finishReason: 'stop', stopReason: stop, text: free.text.slice(0, cut) });
    expect(plan.tokenTexts.join('')).toBe(plan.text);
    expect(plan.tokenTexts.length).toBeLessThanOrEqual(3);
  });

  it('keeps going past the natural end with ignore_eos, and not before min_tokens', () => {
    expect(planChoice({ ...base, ignoreEos: true, tokenLimit: 100 }).tokenTexts).toHaveLength(100);
    const atLeast = planChoice({ ...base, minTokens: 60 });
    expect(atLeast.tokenTexts).toHaveLength(61);
    expect(atLeast.finishReason).toBe('stop');
  });

  it('gives each choice index its own text', () => {
    expect(planChoice({ ...base, index: 0 }).text).not.toBe(planChoice({ ...base, index: 1 }).text);
  });
});
