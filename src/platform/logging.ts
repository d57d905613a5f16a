// Logger options: pino JSON lines, secrets redacted, pretty output only in development on a terminal.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { destination, pino, type DestinationStream, type Logger } from 'pino';
import type { Config } from '../config.js';
import { isoTimeField } from './log-time.js';

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
      timestamp: isoTimeField,
      ...(pretty && options.destination === undefined
        ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' } } }
        : {}),
    },
    options.destination ?? (pretty ? undefined : standardOutput(options.config.logSync)),
  );
}

/** Lines held in memory at most while standard output is not taken (a stalled log collector). */
const heldLinesLimitBytes = 16 * 1024 * 1024;

/**
 * Standard output. Asynchronous by default: a line joins those already waiting and they are written
 * together off the main thread, instead of one blocking write per line on the request path (an
 * access line per request; 2-6 % of the gateway's CPU per request, measured interleaved). pino
 * writes what is held before the process exits. While the output is not taken, lines beyond the
 * limit are dropped rather than held without end or blocking every request, as a synchronous
 * write to a full pipe would.
 */
function standardOutput(sync: boolean): DestinationStream {
  return sync ? destination({ dest: 1, sync: true }) : destination({ dest: 1, sync: false, maxLength: heldLinesLimitBytes });
}

/** A well-formed incoming X-Request-Id is kept so logs correlate across hops; anything else is replaced. */
const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestIdFor(request: IncomingMessage): string {
  const incoming = request.headers['x-request-id'];
  if (typeof incoming === 'string' && requestIdPattern.test(incoming)) return incoming;
  return randomUUID();
}
