// The access line, one per request: written straight to the logger's destination in exactly the
// form pino would write it. Why not `request.log.info`: with our redaction paths pino runs every
// field of every line through its wildcard redactor, which made the access line cost ~20 µs of a
// request's ~260 µs of CPU in the gateway (measured in the process; ~10 µs in isolation). The line's
// fields are numbers and strings the gateway chose or parsed — none can hold a credential, and pino's
// redaction never looked inside the URL's text anyway. Its level prefix, time, bindings (pid,
// hostname, service, request_id), message key and line end are the request logger's own, as pino
// keeps them already serialised; a logger that would shape the line otherwise gets it through pino.
import { levels, symbols } from 'pino';
import type { FastifyBaseLogger } from 'fastify';

export interface AccessLine {
  method: string;
  url: string;
  route: string;
  status: number;
  durationMs: number;
}

interface LineStream {
  write(line: string): unknown;
}

interface LineParts {
  stream: LineStream;
  levelPrefix: string;
  time: string;
  bindings: string;
  messageKey: string;
  end: string;
}

const infoLevel = levels.values.info ?? 30;

export function writeAccessLine(logger: FastifyBaseLogger, line: AccessLine): void {
  const threshold = levels.values[logger.level];
  if (threshold === undefined || threshold > infoLevel) return;
  const durationMs = Math.round(line.durationMs * 100) / 100;
  const parts = linePartsOf(logger);
  if (parts === null) {
    logger.info({ method: line.method, url: line.url, route: line.route, status: line.status, duration_ms: durationMs }, 'request completed');
    return;
  }
  parts.stream.write(
    `${parts.levelPrefix}${parts.time}${parts.bindings}` +
      `,"method":${JSON.stringify(line.method)},"url":${JSON.stringify(line.url)},"route":${JSON.stringify(line.route)}` +
      `,"status":${line.status},"duration_ms":${Number.isFinite(durationMs) ? durationMs : null}` +
      `,${JSON.stringify(parts.messageKey)}:"request completed"${parts.end}`,
  );
}

/**
 * What pino would put around the fields, read from the logger; null when the line is not just
 * those parts: a mixin, a log formatter, a nested key or a write hook would change it, and a
 * multistream wants each line's level and object beside it.
 */
function linePartsOf(logger: FastifyBaseLogger): LineParts | null {
  const read = (symbol: symbol): unknown => Reflect.get(logger, symbol);
  const stream = read(symbols.streamSym);
  const levelPrefix = (read(symbols.lsCacheSym) as Record<number, unknown> | undefined)?.[infoLevel];
  const time = read(symbols.timeSym);
  const bindings = read(symbols.chindingsSym);
  const messageKey = read(symbols.messageKeySym);
  const end = read(symbols.endSym);
  const formatters = read(symbols.formattersSym) as { log?: unknown } | undefined;
  const hooks = read(symbols.hooksSym) as { streamWrite?: unknown } | undefined;
  if (!isLineStream(stream) || Reflect.get(stream, symbols.needsMetadataGsym) === true) return null;
  if (typeof levelPrefix !== 'string' || typeof time !== 'function' || typeof bindings !== 'string' || typeof messageKey !== 'string' || typeof end !== 'string') return null;
  if (read(symbols.mixinSym) != null || read(symbols.nestedKeySym) != null || formatters?.log != null || hooks?.streamWrite != null) return null;
  return { stream, levelPrefix, time: String(time.call(logger)), bindings, messageKey, end };
}

function isLineStream(value: unknown): value is LineStream {
  return typeof value === 'object' && value !== null && typeof Reflect.get(value, 'write') === 'function';
}
