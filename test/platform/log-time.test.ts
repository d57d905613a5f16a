// The log's time field is formatted once per second and completed per line: it must be exactly
// what pino's own isoTime writes, at every millisecond, across seconds, days and years.
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isoTimeField } from '../../src/platform/log-time.js';

afterEach(() => vi.useRealTimers());

describe('the log time field', () => {
  it('is what pino.stdTimeFunctions.isoTime writes, at instants one after another and far apart', () => {
    vi.useFakeTimers();
    const instants = [
      Date.UTC(2026, 11, 8, 1, 2, 3, 456),
      Date.UTC(2026, 11, 31, 23, 59, 59, 999),
      Date.UTC(2027, 0, 1, 0, 0, 0, 0),
      Date.UTC(2024, 1, 29, 12, 0, 0, 7),
      0,
      -1,
      Date.UTC(1969, 6, 20, 20, 17, 40, 50),
      Date.UTC(10000, 0, 1, 0, 0, 0, 1),
    ];
    let instant = Date.UTC(2026, 11, 8, 1, 2, 2, 990);
    for (let step = 0; step < 2500; step += 1) instants.push((instant += 1));
    for (const at of instants) {
      vi.setSystemTime(at);
      expect(isoTimeField(), new Date(at).toISOString()).toBe(pino.stdTimeFunctions.isoTime());
    }
  });
});
