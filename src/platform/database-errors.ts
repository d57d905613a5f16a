// Tells "PostgreSQL cannot be reached right now" apart from a query's own failure: the first is a
// 503 the client may retry (the pool had no connection to give, the server went away), the second
// a bug, answered 500. The socket codes are not PostgreSQL's alone: a dependency that cannot be
// reached and lets such an error through is a 503 too, which is what it is.

/**
 * The error's code: a SQLSTATE from PostgreSQL (pg and PGlite both put it on `code`), or a socket
 * error's name; null when there is none.
 */
export function sqlStateOf(error: unknown): string | null {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : null;
}

/** Socket errors of a connection that failed or broke. */
const connectionErrorCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * SQLSTATE classes 08 (connection exception) and 57P (operator intervention: the server is
 * shutting down, restarting or refusing connections), and 53300 (too many connections).
 */
const unavailableSqlStates = /^(08[0-9A-Z]{3}|57P0[1-4]|53300)$/;

/** Messages of pg and pg-pool for a pool that found no connection in time or a connection that ended. */
const unavailableMessages = /timeout exceeded when trying to connect|Connection terminated|connection (?:is )?closed|Client has encountered a connection error/i;

export function isDatabaseUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = sqlStateOf(error);
  if (code !== null && (connectionErrorCodes.has(code) || unavailableSqlStates.test(code))) return true;
  return unavailableMessages.test(error.message);
}

/**
 * PostgreSQL cannot store U+0000 in text (22021) or in jsonb (22P05); JSON lets a client send it.
 * That is the request's fault, answered 400, not a failure of the gateway.
 */
export function isUnstorableText(error: unknown): boolean {
  const code = sqlStateOf(error);
  return code === '22021' || code === '22P05';
}
