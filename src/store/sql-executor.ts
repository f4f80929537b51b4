/** Hints for one statement. */
export interface QueryOptions {
  /**
   * Rows the statement writes: an adapter with a statement timeout grants this much more
   * time (a batch of thousands of rows is slow work, not a frozen server).
   */
  rows?: number;
}

/**
 * The one port between the store and a PostgreSQL dialect database. The store's SQL is plain
 * text + values (see `store-sql.ts`); an adapter only runs it.
 *
 * Contract every adapter keeps (checked by test/integration/store/store-conformance.test.ts):
 * - `query` with no params may hold several `;`-separated statements (simple protocol) and
 *   returns the rows of the last one; with params it is exactly one statement.
 * - Rows come back with jsonb parsed, timestamptz as `Date` and int8 as string or number
 *   (drivers differ: the store normalises with `Number()`); pass JSON as a string with a
 *   `::jsonb` cast and timestamps as ISO strings so both drivers bind the same text.
 * - `transaction(fn)` runs `fn` in BEGIN/COMMIT on one connection and rolls back when `fn`
 *   throws. Inside `fn` use only `tx`: the outer executor may wait for the transaction to end.
 *   A nested `tx.transaction(g)` runs `g` in the same transaction (no savepoint).
 * - Every error that leaves an adapter is a FlotillaError (`toStoreError` of that adapter):
 *   unique violation -> `conflict` (409) naming the constraint; unreachable database ->
 *   `store_unavailable` (503, retryable); the driver error is the `cause`.
 */
export interface SqlExecutor {
  query<T>(text: string, params?: unknown[], opts?: QueryOptions): Promise<T[]>;
  transaction<R>(fn: (tx: SqlExecutor) => Promise<R>): Promise<R>;
  close(): Promise<void>;
  readonly kind: 'postgres' | 'embedded';
}

/** The name of the constraint a `conflict` error from an adapter violated, if any. */
export function violatedConstraint(err: unknown): string | undefined {
  if (err === null || typeof err !== 'object') return undefined;
  const cause = (err as { cause?: unknown }).cause;
  if (cause !== null && typeof cause === 'object' && 'constraint' in cause) {
    const c = (cause as { constraint?: unknown }).constraint;
    return typeof c === 'string' ? c : undefined;
  }
  return undefined;
}
