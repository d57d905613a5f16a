// A check Redis answers after the instance stopped waiting is given back there (settled as the
// generation ended). When that give-back itself fails — Redis answered, then broke — nothing is
// left unhandled: the instance logs it (once per interval, since such failures come in bursts),
// and says what it costs: the slot lapses on its own, the reservation stays charged.
// The store here is the in-process one behind a wrapper that answers checks late and fails every
// settlement, as a Redis that answers slowly and then drops the connection would.
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { Principal } from '../../src/auth/authenticate.js';
import { createLimitsService } from '../../src/limits/limits-service.js';
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { createMemoryStore } from '../../src/platform/memory-store.js';
import { testConfig } from '../helpers/environment.js';
import { eventually } from '../helpers/limits-fixtures.js';

const STORE_TIMEOUT_MS = 20;
const LATE_BY_MS = 80;

/** The in-process store posing as Redis: checks answered LATE_BY_MS late, settlements failing. */
function lateThenBrokenStore(): { store: KeyValueStore; lateAnswers: () => number } {
  const memory = createMemoryStore();
  let lateAnswers = 0;
  const store: KeyValueStore = {
    ...memory,
    kind: 'redis',
    async admit(request) {
      await new Promise((resolve) => setTimeout(resolve, LATE_BY_MS));
      lateAnswers += 1;
      return memory.admit(request);
    },
    settle: () => Promise.reject(new Error('Connection is closed.')),
  };
  return { store, lateAnswers: () => lateAnswers };
}

function capturedLogger() {
  const lines: Array<{ level: number; msg: string; err?: { message: string } }> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString('utf8')) as (typeof lines)[number]);
      done();
    },
  });
  return { logger: pino({ level: 'warn' }, destination), lines };
}

const principal = (): Principal => ({
  kind: 'api_key',
  userId: randomUUID(),
  role: 'user',
  apiKeyId: randomUUID(),
  limits: { rate_limit_requests: null, rate_limit_window_seconds: null, token_quota_per_minute: null, token_quota_per_day: null, max_concurrent_streams: null },
});

describe('a late check whose give-back fails', () => {
  it('is logged once per interval, with what it costs, and nothing is left unhandled', async () => {
    const { store, lateAnswers } = lateThenBrokenStore();
    const { logger, lines } = capturedLogger();
    const config = testConfig({ backend: 'embedded', environment: { LIMITS_STORE_TIMEOUT_MS: String(STORE_TIMEOUT_MS), TOKEN_QUOTA_PER_DAY: '1000' } }).limits;
    const limits = createLimitsService({ config, store, registry: new Registry(), logger });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      // Two generations admitted on this instance's memory (Redis too slow), then over.
      for (let index = 0; index < 2; index += 1) {
        const admission = await limits.admitGeneration({ principal: principal(), ip: '192.0.2.1', reserveTokens: 10 });
        expect(admission).not.toBeNull();
        await admission!.finish({ prompt_tokens: 3, completion_tokens: 4 });
      }
      await eventually(async () => expect(lateAnswers()).toBe(2));
      await eventually(async () => expect(lines.some((line) => line.msg.includes('could not be given back'))).toBe(true));
      // Let the second give-back fail too before counting.
      await new Promise((resolve) => setTimeout(resolve, 50));
      const giveBackLines = lines.filter((line) => line.msg.includes('could not be given back'));
      expect(giveBackLines).toHaveLength(1);
      expect(giveBackLines[0]!.msg).toContain('slot lapses within 60 s');
      expect(giveBackLines[0]!.err?.message).toBe('Connection is closed.');
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await limits.close();
    }
  });
});
