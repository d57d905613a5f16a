// A Redis error carries the failed command's arguments (ioredis puts them on `err.command`): for
// the admission script those are keys derived from credentials and users' cached state. They must
// never reach a log line.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import { createLogger } from '../../src/platform/logging.js';

function capturingLogger() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  const logger = createLogger({ config: parseConfig({ NODE_ENV: 'test', LOG_LEVEL: 'info' }).config, destination, pretty: false });
  return { logger, lines };
}

describe('log redaction of store commands', () => {
  it('blanks the command (and its arguments) of a Redis error, keeping its message', () => {
    const { logger, lines } = capturingLogger();
    const error = Object.assign(new Error('WRONGTYPE Operation against a key holding the wrong kind of value'), {
      command: { name: 'evalsha', args: ['sha', '2', 'vcg:auth:key:5f1d9c0e-secret-derived', '{"status":"active","role":"admin"}'] },
    });
    logger.warn({ err: error }, 'limits: Redis unavailable');
    const logged = lines.join('');
    expect(logged).toContain('WRONGTYPE');
    expect(logged).not.toContain('secret-derived');
    expect(logged).not.toContain('"role":"admin"');
    expect(logged).toContain('[redacted]');
  });
});
