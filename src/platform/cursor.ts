// Opaque pagination cursors: the sort key of the last item of a page, base64url-encoded JSON.
// Times are kept in microseconds since the epoch, PostgreSQL's own precision: a millisecond Date
// would land between rows and repeat or skip them. A made-up cursor is refused with 400.
import { GatewayError } from '../errors.js';
import { isUuid } from './identifiers.js';

export interface TimeCursor {
  /** Microseconds since the epoch. */
  atMicros: number;
  id: string;
}

export function encodeCursor(cursor: TimeCursor): string {
  return Buffer.from(JSON.stringify({ at: cursor.atMicros, id: cursor.id })).toString('base64url');
}

export function decodeCursor(value: string): TimeCursor {
  const invalid = new GatewayError('validation_failed', 'cursor is not one this API gave out', { param: 'cursor' });
  try {
    const parsed = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as { at?: unknown; id?: unknown };
    if (typeof parsed.at !== 'number' || !Number.isSafeInteger(parsed.at) || parsed.at < 0) throw invalid;
    if (typeof parsed.id !== 'string' || !isUuid(parsed.id)) throw invalid;
    return { atMicros: parsed.at, id: parsed.id };
  } catch {
    throw invalid;
  }
}

/** A cursor over an ever-increasing position (messages in a conversation). */
export function encodePositionCursor(position: number): string {
  return Buffer.from(JSON.stringify({ p: position })).toString('base64url');
}

export function decodePositionCursor(value: string): number {
  const invalid = new GatewayError('validation_failed', 'cursor is not one this API gave out', { param: 'cursor' });
  try {
    const parsed = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as { p?: unknown };
    if (typeof parsed.p !== 'number' || !Number.isSafeInteger(parsed.p) || parsed.p < 0) throw invalid;
    return parsed.p;
  } catch {
    throw invalid;
  }
}
