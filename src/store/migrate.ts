import { FlotillaError } from '../domain/errors.ts';
import * as m0001 from './migrations/0001-initial.ts';
import * as m0002 from './migrations/0002-deployment-last-scaled.ts';
import type { SqlExecutor } from './sql-executor.ts';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Every migration, in the order it is applied. Append only: never edit a shipped one. */
export const migrations: readonly Migration[] = [m0001, m0002];

/**
 * First key of the advisory lock ("Flot"). The second is a hash of the current schema, so
 * processes migrating different schemas of one database (tests, tenants) do not queue.
 */
const MIGRATION_LOCK_KEY = 0x466c6f74;

/**
 * Brings the schema on the executor's search_path up to date and returns the versions it
 * applied. Safe when several processes start at once: everything runs in one transaction
 * under a transaction-scoped advisory lock, so the second process waits, then finds the
 * migrations recorded in `schema_migrations` and applies nothing. Refuses a schema that is
 * newer than this code, rather than running old queries against it.
 */
export async function migrate(
  exec: SqlExecutor,
  list: readonly Migration[] = migrations,
): Promise<{ applied: number[] }> {
  return exec.transaction(async (tx) => {
    await tx.query(
      `SELECT pg_advisory_xact_lock($1::int, hashtext(coalesce(current_schema(), '')))`,
      [MIGRATION_LOCK_KEY],
    );
    await tx.query(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         version    integer PRIMARY KEY,
         name       text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const rows = await tx.query<{ version: number }>('SELECT version FROM schema_migrations');
    const done = new Set(rows.map((r) => Number(r.version)));
    const known = Math.max(0, ...list.map((m) => m.version));
    const newest = Math.max(0, ...done);
    if (newest > known) {
      throw new FlotillaError(
        'internal',
        `database schema is at version ${newest}, newer than this Flotilla knows (${known}); upgrade Flotilla`,
      );
    }
    const applied: number[] = [];
    for (const m of [...list].sort((a, b) => a.version - b.version)) {
      if (done.has(m.version)) continue;
      await tx.query(m.sql);
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
        m.version,
        m.name,
      ]);
      applied.push(m.version);
    }
    return { applied };
  });
}
