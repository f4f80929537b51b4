import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import { FlotillaError, isFlotillaError } from '../domain/errors.ts';
import { fromSqlState } from './sql-errors.ts';
import type { SqlExecutor } from './sql-executor.ts';

/** The one place PGlite's errors become FlotillaErrors. */
export function toStoreError(err: unknown): FlotillaError {
  if (isFlotillaError(err)) return err;
  const classified = fromSqlState(err, 'embedded PostgreSQL');
  if (classified) return classified;
  const message = err instanceof Error ? err.message : String(err);
  if (/PGlite is closed/i.test(message)) {
    return new FlotillaError('dependency_unavailable', 'embedded PostgreSQL is closed', {
      cause: err,
    });
  }
  return new FlotillaError('internal', `embedded PostgreSQL error: ${message}`, { cause: err });
}

interface Runner {
  query<T>(text: string, params?: unknown[]): Promise<{ rows: T[] }>;
  exec(text: string): Promise<{ rows: unknown[] }[]>;
}

/** Same contract as pg: no params means simple protocol, several statements allowed. */
async function run<T>(runner: Runner, text: string, params?: unknown[]): Promise<T[]> {
  try {
    if (params === undefined || params.length === 0) {
      const results = await runner.exec(text);
      return (results[results.length - 1]?.rows ?? []) as T[];
    }
    return (await runner.query<T>(text, params)).rows;
  } catch (err) {
    throw toStoreError(err);
  }
}

function txExecutor(tx: Transaction): SqlExecutor {
  const self: SqlExecutor = {
    kind: 'embedded',
    query: (text, params) => run(tx as unknown as Runner, text, params),
    transaction: (fn) => fn(self),
    close: async () => {},
  };
  return self;
}

/**
 * PGlite is one PostgreSQL backend in this process's memory: two processes (or two PGlite
 * instances in one process) on the same files would corrupt them. A pid lock file makes the
 * second opener fail with a clear message; a lock left by a dead process is taken over.
 */
function acquireLock(lockPath: string): () => void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(lockPath, { force: true });
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw toStoreError(err);
    }
    const holder = Number.parseInt(readFileSync(lockPath, 'utf8').trim(), 10);
    if (Number.isInteger(holder) && holder > 0 && isAlive(holder)) {
      throw new FlotillaError(
        'dependency_unavailable',
        `embedded database ${lockPath} is in use by process ${holder}` +
          (holder === process.pid ? ' (this process: close the other store first)' : ''),
      );
    }
    rmSync(lockPath, { force: true });
  }
  throw new FlotillaError('dependency_unavailable', `could not lock ${lockPath}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/**
 * A SqlExecutor on an embedded PostgreSQL (PGlite) whose files live in `<dataDir>/pgdata`, or in
 * memory when `dataDir` is null. PGlite has one connection: it queues queries behind an open
 * transaction, so transactions are serialized and never interleave with other queries.
 */
export async function createEmbeddedExecutor(dataDir: string | null): Promise<SqlExecutor> {
  let release: () => void = () => {};
  let db: PGlite;
  try {
    if (dataDir === null) {
      db = await PGlite.create();
    } else {
      mkdirSync(dataDir, { recursive: true });
      release = acquireLock(join(dataDir, 'pgdata.lock'));
      db = await PGlite.create(join(dataDir, 'pgdata'));
    }
  } catch (err) {
    release();
    throw toStoreError(err);
  }
  let closed = false;
  return {
    kind: 'embedded',
    query: (text, params) => run(db as unknown as Runner, text, params),
    async transaction<R>(fn: (tx: SqlExecutor) => Promise<R>): Promise<R> {
      try {
        return await db.transaction((tx) => fn(txExecutor(tx)));
      } catch (err) {
        throw toStoreError(err);
      }
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      try {
        await db.close();
      } finally {
        release();
      }
    },
  };
}
