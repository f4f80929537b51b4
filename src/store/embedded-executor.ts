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
    return new FlotillaError('store_unavailable', 'embedded PostgreSQL is closed', {
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
    query: (text, params) => run(tx, text, params),
    transaction: (fn) => fn(self),
    close: async () => {},
  };
  return self;
}

/**
 * PGlite is one PostgreSQL backend in this process's memory: two processes (or two PGlite
 * instances in one process) on the same files would corrupt them. A lock file makes the
 * second opener fail with a clear message; a lock left by a dead process is taken over.
 *
 * The file holds `<pid> <start time>` (field 22 of /proc/<pid>/stat, clock ticks since boot):
 * a pid alone outlives its holder once the pid is reused (a crash-restart loop in a container
 * gets the same pid, an unrelated process may get it), and a zombie still answers kill(0). The
 * lock is held only while a process with that pid and that start time runs. Where /proc is
 * missing (not Linux) the start time is empty and the pid check alone decides, as before.
 */
function acquireLock(lockPath: string): () => void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeSync(fd, `${process.pid} ${processStartTime(process.pid) ?? ''}`.trim());
      closeSync(fd);
      return () => rmSync(lockPath, { force: true });
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw toStoreError(err);
    }
    const [pidText, startText] = readFileSync(lockPath, 'utf8').trim().split(/\s+/);
    const holder = Number.parseInt(pidText ?? '', 10);
    if (Number.isInteger(holder) && holder > 0 && holds(holder, startText)) {
      throw new FlotillaError(
        'store_unavailable',
        `embedded database ${lockPath} is in use by process ${holder}` +
          (holder === process.pid ? ' (this process: close the other store first)' : ''),
      );
    }
    rmSync(lockPath, { force: true });
  }
  throw new FlotillaError('store_unavailable', `could not lock ${lockPath}`);
}

/** Whether the process that wrote a lock (`pid`, and its start time when recorded) still runs. */
function holds(pid: number, recordedStart: string | undefined): boolean {
  if (!isAlive(pid)) return false;
  const stat = procStat(pid);
  if (stat === undefined) return true; // No /proc: kill(0) is all we know.
  if (stat.state === 'Z' || stat.state === 'X') return false;
  return recordedStart === undefined || recordedStart === '' || recordedStart === stat.startTime;
}

/** State and start time of `pid` from /proc/<pid>/stat, or undefined without /proc. */
function procStat(pid: number): { state: string; startTime: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces: count from its end.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
  return { state: fields[0] ?? '', startTime: fields[19] ?? '' };
}

function processStartTime(pid: number): string | undefined {
  return procStat(pid)?.startTime;
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
    query: (text, params) => run(db, text, params),
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
