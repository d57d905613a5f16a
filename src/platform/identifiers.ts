// Ids in URLs are UUIDs; anything else names nothing, so it answers 404 like a missing row
// (and never reaches PostgreSQL, which would reject the cast).
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return uuidPattern.test(value);
}
