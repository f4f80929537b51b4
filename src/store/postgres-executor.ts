import pg from 'pg';
import { FlotillaError, isFlotillaError } from '../domain/errors.ts';
import { fromSqlState } from './sql-errors.ts';
import type { QueryOptions, SqlExecutor } from './sql-executor.ts';

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
  /Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|Connection ended unexpectedly|not queryable/i;

/** The one place pg's errors become FlotillaErrors. */
export function toStoreError(err: unknown): FlotillaError {
  if (isFlotillaError(err)) return err;
  const classified = fromSqlState(err, 'PostgreSQL');
  if (classified) return classified;
  const e = err as { code?: unknown; message?: unknown } | null;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (typeof e?.code === 'string' && CONNECTION_ERRNOS.has(e.code)) {
    return new FlotillaError('store_unavailable', `PostgreSQL unreachable: ${message}`, {
      retryable: true,
      cause: err,
    });
  }
  if (/Query read timeout/i.test(message)) {
    return new FlotillaError(
      'store_unavailable',
      'PostgreSQL unavailable: no answer within the query timeout',
      { retryable: true, cause: err },
    );
  }
  if (/timeout exceeded when trying to connect/i.test(message)) {
    return new FlotillaError(
      'store_unavailable',
      'PostgreSQL unavailable: no connection within the acquire timeout',
      { retryable: true, cause: err },
    );
  }
  if (CONNECTION_MESSAGES.test(message)) {
    return new FlotillaError('store_unavailable', `PostgreSQL unavailable: ${message}`, {
      retryable: true,
      cause: err,
    });
  }
  if (/after calling end on the pool/i.test(message)) {
    return new FlotillaError('store_unavailable', 'PostgreSQL store is closed', {
      cause: err,
    });
  }
  return new FlotillaError('internal', `PostgreSQL error: ${message}`, { cause: err });
}

/**
 * Whether an error means the connection itself is gone or frozen (not a refused statement):
 * a ROLLBACK on it would only wait for another timeout, so the connection is destroyed.
 */
function connectionLost(err: FlotillaError): boolean {
  return err.code === 'store_unavailable' || err.code === 'dependency_unavailable';
}

/** Time limits of a PostgreSQL executor, in milliseconds. */
export interface PostgresTimeouts {
  /**
   * Longest wait for a pooled connection, a new connection's handshake included. Default
   * 1000: with `queryMs` it bounds an API call on a frozen server to about 2 s.
   */
  acquireMs?: number;
  /**
   * Longest wait for the answer to a statement outside a transaction, and to a transaction's
   * BEGIN. Default 1000.
   */
  queryMs?: number;
  /**
   * Longest wait for a statement inside a transaction, after its BEGIN was answered (the
   * snapshot writer's batches of thousands of rows take longer than `queryMs` on a busy
   * machine, and a server that answered BEGIN a moment ago is not frozen). Also the server's
   * `statement_timeout`. Default 10000.
   */
  transactionQueryMs?: number;
}

/** Extra statement time per row a statement writes (`QueryOptions.rows`). */
const PER_ROW_MS = 2;

export const DEFAULT_POSTGRES_TIMEOUTS = {
  acquireMs: 1000,
  queryMs: 1000,
  transactionQueryMs: 10_000,
} as const;

function clientExecutor(client: pg.PoolClient, timeoutMs: number): SqlExecutor {
  const self: SqlExecutor = {
    kind: 'postgres',
    async query<T>(text: string, params?: unknown[]): Promise<T[]> {
      try {
        // query_timeout per statement is in pg's QueryConfig but not in its types.
        const config = { text, values: params, query_timeout: timeoutMs } as pg.QueryConfig;
        const res = (await client.query(config)) as pg.QueryResult | pg.QueryResult[];
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
export function createPostgresExecutor(
  url: string,
  opts: { max?: number } & PostgresTimeouts = {},
): SqlExecutor {
  const acquireMs = opts.acquireMs ?? DEFAULT_POSTGRES_TIMEOUTS.acquireMs;
  const queryMs = opts.queryMs ?? DEFAULT_POSTGRES_TIMEOUTS.queryMs;
  const txQueryMs = Math.max(
    queryMs,
    opts.transactionQueryMs ?? DEFAULT_POSTGRES_TIMEOUTS.transactionQueryMs,
  );
  // A frozen server (SIGSTOP, a stalled disk, a silent network) accepts TCP and then says
  // nothing: without these limits every call waits for it. connectionTimeoutMillis bounds both
  // the wait for a free pooled connection and a new connection's handshake; query_timeout
  // fails a statement whose answer does not come (pg then destroys that connection);
  // statement_timeout makes the server cancel a runaway statement too.
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    connectionTimeoutMillis: acquireMs,
    query_timeout: queryMs,
    statement_timeout: txQueryMs,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
  });
  // An idle pooled connection that dies (server restart) emits here; the pool drops it and
  // the next query reconnects. Without a listener Node would crash the process.
  pool.on('error', () => {});
  let closed = false;

  return {
    kind: 'postgres',
    async query<T>(text: string, params?: unknown[], qopts?: QueryOptions): Promise<T[]> {
      try {
        const rows = qopts?.rows ?? 0;
        const res = (await (rows > 0
          ? pool.query({
              text,
              values: params,
              query_timeout: queryMs + rows * PER_ROW_MS,
            } as pg.QueryConfig)
          : pool.query(text, params))) as pg.QueryResult | pg.QueryResult[];
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
        // BEGIN with the short limit: a frozen server is found here, before any work.
        await client.query('BEGIN');
        const result = await fn(clientExecutor(client, txQueryMs));
        await client.query({ text: 'COMMIT', query_timeout: txQueryMs } as pg.QueryConfig);
        return result;
      } catch (err) {
        const storeErr = toStoreError(err);
        if (connectionLost(storeErr)) {
          // No ROLLBACK on a dead or frozen connection: destroying it ends the transaction.
          broken = storeErr;
          throw storeErr;
        }
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
