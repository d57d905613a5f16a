// The access line is written by hand (pino's redactor made it a tenth of a request's CPU), so it
// must stay exactly the line pino would have written, and appear once per request.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import { writeAccessLine } from '../../src/platform/access-log.js';
import { createLogger } from '../../src/platform/logging.js';
import { createTestApp, type TestApp } from '../helpers/test-app.js';

function capturingLogger(level: string) {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  const logger = createLogger({ config: parseConfig({ NODE_ENV: 'test', LOG_LEVEL: level }).config, destination, pretty: false });
  return { logger, lines };
}

const withoutTime = (line: string) => line.replace(/"time":"[^"]+"/, '"time":"-"');

describe('access line', () => {
  it('is byte for byte what pino writes for the same fields, bindings included', () => {
    const { logger, lines } = capturingLogger('info');
    const requestLogger = logger.child({ request_id: 'req-1' });
    const fields = { method: 'POST', url: '/v1/chat/completions?x="quoted"\\\n\u0001é', route: '/v1/chat/completions', status: 201 };
    writeAccessLine(requestLogger, { ...fields, durationMs: 12.3456 });
    requestLogger.info({ ...fields, duration_ms: 12.35 }, 'request completed');
    expect(lines).toHaveLength(2);
    const [handWritten, pinoWritten] = lines.map(withoutTime);
    expect(handWritten).toBe(pinoWritten);
    const parsed = JSON.parse(lines[0] ?? '') as Record<string, unknown>;
    expect(parsed).toMatchObject({ level: 30, service: 'vllm-chat-gateway', request_id: 'req-1', ...fields, duration_ms: 12.35, msg: 'request completed' });
    expect(Math.abs(Date.parse(String(parsed.time)) - Date.now())).toBeLessThan(5_000);
  });

  it('keeps a logger’s own message key and line end, and leaves a mixin’s line to pino', () => {
    for (const options of [{ messageKey: 'message', crlf: true }, { mixin: () => ({ trace_id: 'trace-1' }) }]) {
      const lines: string[] = [];
      const destination = new Writable({
        write(chunk: Buffer, _encoding, done) {
          lines.push(chunk.toString('utf8'));
          done();
        },
      });
      const requestLogger = pino({ ...options, timestamp: pino.stdTimeFunctions.isoTime }, destination).child({ request_id: 'req-3' });
      const fields = { method: 'GET', url: '/health/live', route: '/health/live', status: 200 };
      writeAccessLine(requestLogger, { ...fields, durationMs: 0.5 });
      requestLogger.info({ ...fields, duration_ms: 0.5 }, 'request completed');
      expect(lines).toHaveLength(2);
      expect(withoutTime(lines[0] ?? '')).toBe(withoutTime(lines[1] ?? ''));
    }
  });

  it('is not written when the level is above info', () => {
    const { logger, lines } = capturingLogger('warn');
    writeAccessLine(logger.child({ request_id: 'req-2' }), { method: 'GET', url: '/', route: '/', status: 200, durationMs: 1 });
    expect(lines).toEqual([]);
  });
});

describe('access line through the app', () => {
  let testApp: TestApp | undefined;
  afterEach(async () => {
    await testApp?.close();
    testApp = undefined;
  });

  it('writes one line per request, with its request id, route, status and duration', async () => {
    testApp = await createTestApp({ backend: 'embedded', captureLogs: true });
    const first = await testApp.app.inject({ method: 'GET', url: '/health/live' });
    const second = await testApp.app.inject({ method: 'GET', url: '/no/such/route' });
    const accessLines = testApp.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.msg === 'request completed');
    expect(accessLines).toHaveLength(2);
    expect(accessLines[0]).toMatchObject({ request_id: first.headers['x-request-id'], method: 'GET', url: '/health/live', route: '/health/live', status: 200 });
    expect(accessLines[1]).toMatchObject({ request_id: second.headers['x-request-id'], url: '/no/such/route', route: 'unmatched', status: 404 });
    expect(typeof accessLines[0]?.duration_ms).toBe('number');
  });
});
