// Timestamps as whole microseconds since the epoch, PostgreSQL's own precision, for keyset
// pagination cursors: exact both ways, no floating point and no millisecond Date in between.
import { sql, type Expression } from 'kysely';

export function microsecondsSinceEpoch(timestamp: Expression<unknown>) {
  return sql<number>`(extract(epoch from ${timestamp}) * 1000000)::bigint`;
}

export function timestampFromMicroseconds(micros: number) {
  return sql<Date>`(timestamptz 'epoch' + (${String(micros)} || ' microseconds')::interval)`;
}
