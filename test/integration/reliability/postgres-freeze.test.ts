import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFlotillaError } from '../../../src/domain/errors.ts';
import { createPostgresExecutor } from '../../../src/store/postgres-executor.ts';
import { openStore, type Store } from '../../../src/store/store.ts';
import { spawnPostgres } from '../../harness/services.ts';

/**
 * A PostgreSQL server of its own: SIGSTOP on the shared one would freeze every other test.
 * The postmaster and all its children (the backends holding our connections) are stopped, as
 * a frozen host or a stalled disk would.
 */
let pg: Awaited<ReturnType<typeof spawnPostgres>>;
let frozen: number[] = [];

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

async function freeze(): Promise<void> {
  const exec = createPostgresExecutor(pg.url, { max: 1 });
  const [row] = await exec.query<{ data_directory: string }>('SHOW data_directory');
  await exec.close();
  const dataDir = row?.data_directory as string;
  const postmaster = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  frozen = [postmaster, ...childrenOf(postmaster)];
  for (const pid of frozen) {
    try {
      process.kill(pid, 'SIGSTOP');
    } catch {
      // A backend that ended between the listing and the signal (our own closed connection).
    }
  }
}

function thaw(): void {
  for (const pid of frozen) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // Gone already.
    }
  }
  frozen = [];
}

/** Runs `call` and returns how long it took to fail and with what. */
async function timedFailure(call: () => Promise<unknown>): Promise<{ ms: number; err: unknown }> {
  const started = Date.now();
  try {
    await call();
  } catch (err) {
    return { ms: Date.now() - started, err };
  }
  throw new Error('the call succeeded against a frozen PostgreSQL');
}

beforeAll(async () => {
  pg = await spawnPostgres();
}, 60_000);

afterAll(async () => {
  thaw();
  await pg?.stop();
});

describe('a frozen PostgreSQL (SIGSTOP)', () => {
  it('fails reads, transactions and new connections with a 503 store_unavailable within 2 s, and serves again after SIGCONT', async () => {
    const store: Store = await openStore({ databaseUrl: pg.url, dataDir: '/nonexistent' });
    try {
      // Warm the pool so the freeze catches pooled connections mid-use, as in production.
      await Promise.all([store.listDeployments(), store.listDeployments(), store.ping()]);
      await freeze();
      try {
        const calls = await Promise.all([
          timedFailure(() => store.listDeployments()),
          timedFailure(() => store.listDeployments()),
          ...Array.from({ length: 12 }, () => timedFailure(() => store.listDeployments())),
        ]);
        for (const { ms, err } of calls) {
          expect(isFlotillaError(err), String(err)).toBe(true);
          if (!isFlotillaError(err)) continue;
          expect(err.code).toBe('store_unavailable');
          expect(err.status).toBe(503);
          expect(ms).toBeLessThan(2_500);
        }
        expect(await store.ping()).toBe(false);
      } finally {
        thaw();
      }
      // The connections that timed out were destroyed: the pool serves again at once.
      await expect(store.listDeployments()).resolves.toBeInstanceOf(Array);
    } finally {
      thaw();
      await store.close();
    }
  });

  it('fails a transaction on a frozen connection without a ROLLBACK wait', async () => {
    const exec = createPostgresExecutor(pg.url, { max: 2 });
    try {
      await exec.query('SELECT 1');
      await freeze();
      try {
        const { ms, err } = await timedFailure(() =>
          exec.transaction(async (tx) => tx.query('SELECT 1')),
        );
        expect(isFlotillaError(err) && err.code).toBe('store_unavailable');
        expect(ms).toBeLessThan(2_500);
      } finally {
        thaw();
      }
      await expect(exec.transaction((tx) => tx.query('SELECT 2 AS n'))).resolves.toEqual([
        { n: 2 },
      ]);
    } finally {
      thaw();
      await exec.close();
    }
  });
});
