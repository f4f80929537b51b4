import pg from 'pg';
import { FlotillaError, isFlotillaError } from '../domain/errors.ts';
import { fromSqlState } from './sql-errors.ts';
import type { SqlExecutor } from './sql-executor.ts';

/** Socket-level failures: the server is not there (yet, or any more). */
const CONNECTION_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/** pg reports these without an errno or SQLSTATE. */
const CONNECTION_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended unexpectedly|not queryable/i;

/** The one place pg's errors become FlotillaErrors. */
export function toStoreError(err: unknown): FlotillaError {
  if (isFlotillaError(err)) return err;
  const classified = fromSqlState(err, 'PostgreSQL');
  if (classified) return classified;
  const e = err as { code?: unknown; message?: unknown } | null;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (typeof e?.code === 'string' && CONNECTION_ERRNOS.has(e.code)) {
    return new FlotillaError('dependency_unavailable', `PostgreSQL unreachable: ${message}`, {
      retryable: true,
      cause: err,
    });
  }
  if (CONNECTION_MESSAGES.test(message)) {
    return new FlotillaError('dependency_unavailable', `PostgreSQL unavailable: ${message}`, {
      retryable: true,
      cause: err,
    });
  }
  if (/after calling end on the pool/i.test(message)) {
    return new FlotillaError('dependency_unavailable', 'PostgreSQL store is closed', {
      cause: err,
    });
  }
  return new FlotillaError('internal', `PostgreSQL error: ${message}`, { cause: err });
}

function clientExecutor(client: pg.PoolClient): SqlExecutor {
  const self: SqlExecutor = {
    kind: 'postgres',
    async query<T>(text: string, params?: unknown[]): Promise<T[]> {
      try {
        const res = (await client.query(text, params)) as pg.QueryResult | pg.QueryResult[];
        // A multi-statement text (no params) answers one result per statement.
        const last = Array.isArray(res) ? res[res.length - 1] : res;
        return (last?.rows ?? []) as T[];
      } catch (err) {
        throw toStoreError(err);
      }
    },
    transaction: (fn) => fn(self),
    close: async () => {},
  };
  return self;
}

/**
 * A SqlExecutor on a pg Pool. The URL may carry libpq `options`, e.g.
 * `?options=-c search_path=myschema`; pg sends them in the startup packet, so every pooled
 * connection gets them (this is how tests isolate each one in its own schema).
 */
export function createPostgresExecutor(url: string, opts: { max?: number } = {}): SqlExecutor {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle pooled connection that dies (server restart) emits here; the pool drops it and
  // the next query reconnects. Without a listener Node would crash the process.
  pool.on('error', () => {});
  let closed = false;

  return {
    kind: 'postgres',
    async query<T>(text: string, params?: unknown[]): Promise<T[]> {
      try {
        const res = (await pool.query(text, params)) as pg.QueryResult | pg.QueryResult[];
        const last = Array.isArray(res) ? res[res.length - 1] : res;
        return (last?.rows ?? []) as T[];
      } catch (err) {
        throw toStoreError(err);
      }
    },
    async transaction<R>(fn: (tx: SqlExecutor) => Promise<R>): Promise<R> {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (err) {
        throw toStoreError(err);
      }
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const result = await fn(clientExecutor(client));
        await client.query('COMMIT');
        return result;
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          // The connection is unusable; destroy it instead of returning it to the pool.
          broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
        }
        throw toStoreError(err);
      } finally {
        client.release(broken);
      }
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}
