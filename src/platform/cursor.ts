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

/** Reads a cursor this API gave out, or answers 400: a made-up one never reaches SQL. */
function decode<T>(value: string, read: (parsed: Record<string, unknown>) => T | null): T {
  const invalid = new GatewayError('validation_failed', 'cursor is not one this API gave out', { param: 'cursor' });
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'));
  } catch {
    throw invalid;
  }
  const result = typeof parsed === 'object' && parsed !== null ? read(parsed as Record<string, unknown>) : null;
  if (result === null) throw invalid;
  return result;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

export function decodeCursor(value: string): TimeCursor {
  return decode(value, (parsed) => (isCount(parsed.at) && typeof parsed.id === 'string' && isUuid(parsed.id) ? { atMicros: parsed.at, id: parsed.id } : null));
}

/** A cursor over an ever-increasing position (messages in a conversation). */
export function encodePositionCursor(position: number): string {
  return Buffer.from(JSON.stringify({ p: position })).toString('base64url');
}

export function decodePositionCursor(value: string): number {
  return decode(value, (parsed) => (isCount(parsed.p) ? parsed.p : null));
}

/**
 * A page from rows fetched with `limit + 1`: the extra row only says another page exists, and the
 * cursor names the last row shown.
 */
export function pageOf<T>(rows: T[], limit: number, cursorOf: (last: T) => string): { items: T[]; nextCursor: string | null } {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, nextCursor: rows.length > limit && last !== undefined ? cursorOf(last) : null };
}
