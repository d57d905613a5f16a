// Logger options: pino JSON lines, secrets redacted, pretty output only in development on a terminal.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { destination as sonicDestination, pino, type DestinationStream, type Logger } from 'pino';
import type { Config } from '../config.js';

/**
 * Paths pino blanks out wherever they appear in a log object, so a credential that slips into
 * a log call is still never written.
 */
export const redactedPaths = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  // ioredis puts a failed command's arguments on its error: keys derived from credentials, states.
  'err.command',
  'err.cause.command',
  'headers.cookie',
  '*.password',
  '*.current_password',
  '*.new_password',
  '*.password_hash',
  '*.token',
  '*.access_token',
  '*.refresh_token',
  '*.api_key',
  '*.key',
  '*.secret',
  'password',
  'token',
  'access_token',
  'refresh_token',
  'api_key',
  'secret',
];

export function createLogger(options: { config: Config; destination?: DestinationStream; pretty?: boolean }): Logger {
  const pretty = options.pretty ?? (options.config.nodeEnv === 'development' && process.stdout.isTTY);
  return pino(
    {
      level: options.config.logLevel,
      redact: { paths: redactedPaths, censor: '[redacted]' },
      base: { service: 'vllm-chat-gateway' },
      timestamp: pino.stdTimeFunctions.isoTime,
      ...(pretty && options.destination === undefined
        ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' } } }
        : {}),
    },
    options.destination ?? (pretty || options.config.logFlushIntervalMs === 0 ? undefined : batchedStdout(options.config.logFlushIntervalMs)),
  );
}

/** Lines buffered up to this many bytes before a write, unless the interval comes first. */
const batchBytes = 4096;

/**
 * stdout written once per 4 KiB or per interval instead of once per line: at a few thousand
 * requests a second, a write per access-log line cost a tenth of the gateway's throughput.
 */
function batchedStdout(intervalMs: number): DestinationStream {
  // One per process and interval: every logger of the process shares it, and one exit hook.
  let stream = batchedStreams.get(intervalMs);
  if (stream === undefined) {
    const created = sonicDestination({ dest: 1, sync: true, minLength: batchBytes, periodicFlush: intervalMs });
    // Also after an uncaught exception ('exit' still runs); only a process killed outright loses the last lines.
    process.once('exit', () => {
      try {
        created.flushSync();
      } catch {
        // stdout already closed: nothing can be written anyway.
      }
    });
    batchedStreams.set(intervalMs, created);
    stream = created;
  }
  return stream;
}

const batchedStreams = new Map<number, ReturnType<typeof sonicDestination>>();

/** A well-formed incoming X-Request-Id is kept so logs correlate across hops; anything else is replaced. */
const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestIdFor(request: IncomingMessage): string {
  const incoming = request.headers['x-request-id'];
  if (typeof incoming === 'string' && requestIdPattern.test(incoming)) return incoming;
  return randomUUID();
}
