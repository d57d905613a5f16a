// Opaque pagination cursors: the sort key of the last item of a page, base64url-encoded JSON.
// A cursor a client made up is refused with 400, never passed to SQL unchecked.
import { GatewayError } from '../errors.js';
import { isUuid } from './identifiers.js';

export interface TimeCursor {
  at: Date;
  id: string;
}

export function encodeCursor(cursor: TimeCursor): string {
  return Buffer.from(JSON.stringify({ at: cursor.at.toISOString(), id: cursor.id })).toString('base64url');
}

export function decodeCursor(value: string): TimeCursor {
  const invalid = new GatewayError('validation_failed', 'cursor is not one this API gave out', { param: 'cursor' });
  try {
    const parsed = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as { at?: unknown; id?: unknown };
    if (typeof parsed.at !== 'string' || typeof parsed.id !== 'string' || !isUuid(parsed.id)) throw invalid;
    const at = new Date(parsed.at);
    if (Number.isNaN(at.getTime())) throw invalid;
    return { at, id: parsed.id };
  } catch {
    throw invalid;
  }
}
