import { FlotillaError } from '../domain/errors.ts';

/** The fields PostgreSQL puts on an error (pg's and PGlite's DatabaseError both carry them). */
interface PgErrorFields {
  code?: unknown;
  message?: unknown;
  constraint?: unknown;
  detail?: unknown;
  table?: unknown;
}

/**
 * Classifies an error that carries a PostgreSQL SQLSTATE. Returns undefined when the error has
 * none, so the calling adapter can handle its driver's own failures (sockets, closed handles).
 */
export function fromSqlState(err: unknown, database: string): FlotillaError | undefined {
  if (err === null || typeof err !== 'object') return undefined;
  const e = err as PgErrorFields;
  if (typeof e.code !== 'string' || !/^[0-9A-Z]{5}$/.test(e.code)) return undefined;
  const code = e.code;
  const message = typeof e.message === 'string' ? e.message : String(err);
  const constraint = typeof e.constraint === 'string' ? e.constraint : undefined;
  const detail = typeof e.detail === 'string' ? e.detail : message;
  if (code === '23505' || code === '23503') {
    const what = code === '23505' ? 'unique constraint' : 'foreign key';
    return new FlotillaError('conflict', `${what} "${constraint ?? '?'}" violated`, {
      details: [{ path: constraint ?? String(e.table ?? ''), message: detail }],
      cause: err,
    });
  }
  if (code === '40001' || code === '40P01') {
    return new FlotillaError('conflict', `${database}: ${message}`, {
      retryable: true,
      cause: err,
    });
  }
  if (code.startsWith('22') || code.startsWith('23')) {
    return new FlotillaError('validation', `${database} rejected a value: ${message}`, {
      details: constraint ? [{ path: constraint, message: detail }] : [],
      cause: err,
    });
  }
  // 08: connection exception; 53: insufficient resources (too many connections);
  // 57P0x: the server is shutting down or starting; 57014: cancelled (statement timeout).
  if (
    code.startsWith('08') ||
    code.startsWith('53') ||
    code.startsWith('57P') ||
    code === '57014'
  ) {
    return new FlotillaError('store_unavailable', `${database} unavailable: ${message}`, {
      retryable: true,
      cause: err,
    });
  }
  return new FlotillaError('internal', `${database} error ${code}: ${message}`, { cause: err });
}
