// Makes an embedded PGlite database look like a `pg` pool to Kysely's PostgresDialect, so the
// gateway runs the same SQL on PGlite as on PostgreSQL. PGlite has one session: a connection is
// lent to one user at a time, so a transaction never interleaves with another query.
import type { PGlite } from '@electric-sql/pglite';
import type { PostgresPool, PostgresPoolClient, PostgresQueryResult } from 'kysely';

export function createPglitePoolAdapter(database: PGlite): PostgresPool {
  let queue: Promise<void> = Promise.resolve();

  const query = async <Row>(sqlText: string, parameters: ReadonlyArray<unknown>): Promise<PostgresQueryResult<Row>> => {
      if (parameters.length === 0) {
        // Parameterless SQL goes through the simple protocol, which accepts several statements
        // (migration files); the last statement's rows are the result, as with `pg`.
        const results = await database.exec(sqlText);
        const last = results[results.length - 1];
        return toPostgresResult<Row>(sqlText, (last?.rows ?? []) as Row[], last?.affectedRows);
      }
      const result = await database.query<Row>(sqlText, [...parameters]);
      return toPostgresResult<Row>(sqlText, result.rows, result.affectedRows);
  };

  return {
    async connect(): Promise<PostgresPoolClient> {
      let release!: () => void;
      const previous = queue;
      queue = new Promise<void>((resolve) => {
        release = resolve;
      });
      await previous;
      let released = false;
      return {
        query: query as PostgresPoolClient['query'],
        release: () => {
          if (released) return;
          released = true;
          release();
        },
      };
    },
    async end(): Promise<void> {
      await queue;
      await database.close();
    },
  };
}

function toPostgresResult<Row>(sqlText: string, rows: Row[], affectedRows: number | undefined): PostgresQueryResult<Row> {
  // Kysely reads `command` to decide whether `rowCount` means affected rows.
  const command = /^\s*(insert|update|delete|merge)\b/i.exec(sqlText)?.[1]?.toUpperCase() ?? 'SELECT';
  return {
    command: command as PostgresQueryResult<Row>['command'],
    rowCount: affectedRows ?? rows.length,
    rows,
  };
}
