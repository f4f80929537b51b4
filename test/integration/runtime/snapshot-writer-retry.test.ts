/**
 * The snapshot writer against a real, slow PostgreSQL (issue 15: "a snapshot-version conflict
 * was logged once after pool acquire timeouts", and a replica HEALTHY whose STARTING → HEALTHY
 * history row was never written). A batch whose answer does not come within the client's
 * query timeout may still commit on the server; its retry must then count as written — not
 * as a version conflict that drops it together with every transition queued after it.
 *
 * The slow server is made real with a row lock: another connection holds the replica's
 * snapshot row FOR UPDATE, so the writer's statement waits past its 300 ms read timeout; the
 * lock is released after the timeout fired, and the waiting statement commits.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { type PersistedSubtree, SnapshotWriter } from '../../../src/runtime/snapshot-writer.ts';
import { openStore, type Store } from '../../../src/store/store.ts';
import { isolatedDatabase } from '../../harness/isolation.ts';
import { waitFor } from '../../harness/wait.ts';

const closers: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => {});
});

/** The deployment's subtree as the writer reads it; the replica's snapshot follows its state. */
function subtree(): { tree: PersistedSubtree; set(state: string): void } {
  const tree: PersistedSubtree = {
    value: 'RUNNING',
    context: { deploymentId: 'd1' },
    children: { 'replica:r1': { snapshot: { value: 'STARTING', status: 'active' } } },
  };
  return {
    tree,
    set(state) {
      tree.children['replica:r1'] = { snapshot: { value: state, status: 'active' } };
    },
  };
}

describe('snapshot writer on a slow PostgreSQL', () => {
  it('a batch that committed after its answer timed out: the retry is no conflict, and every transition has its one history row', async (ctx) => {
    const { url } = await isolatedDatabase(ctx);
    const store: Store = await openStore({
      databaseUrl: url,
      dataDir: mkdtempSync(join(tmpdir(), 'flotilla-writer-')),
      postgresTimeouts: { queryMs: 300 },
    });
    closers.push(() => store.close());
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    closers.push(() => admin.end());
    const version = async () =>
      Number(
        (
          await admin.query<{ version: string }>(
            "SELECT version FROM actor_snapshots WHERE actor_id = 'replica:r1'",
          )
        ).rows[0]?.version ?? 0,
      );

    const conflicts: string[][] = [];
    const errors: unknown[] = [];
    const s = subtree();
    const writer = new SnapshotWriter(
      store,
      // A fresh object per read, as the actor's getPersistedSnapshot() gives.
      { persisted: () => structuredClone(s.tree) },
      { onConflict: (ids) => conflicts.push(ids), onError: (e) => errors.push(e) },
    );
    const transition = (to: string) => {
      s.set(to);
      writer.record({
        actorId: 'replica:r1',
        kind: 'replica',
        deploymentId: 'd1',
        to,
        event: 'transition',
        reason: null,
        at: new Date(),
      });
    };

    transition('STARTING');
    await writer.barrier();
    expect(await version()).toBe(1);

    // PostgreSQL slow on this row: the HEALTHY batch waits past the client's read timeout.
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    closers.push(() => locker.end());
    await locker.query('BEGIN');
    await locker.query("SELECT 1 FROM actor_snapshots WHERE actor_id = 'replica:r1' FOR UPDATE");
    transition('HEALTHY');
    await expect(writer.barrier()).rejects.toThrow(/query timeout/);
    // Another transition while the failed batch waits for its retry (1 s).
    transition('UNHEALTHY');
    // The server ran the timed-out statement all along: it commits once the lock is gone.
    await locker.query('COMMIT');
    await waitFor(async () => (await version()) === 2, {
      timeoutMs: 10_000,
      message: 'the timed-out batch committed on the server',
    });

    await waitFor(() => writer.barrier().then(() => true), {
      timeoutMs: 20_000,
      intervalMs: 100,
      message: 'the retry landed',
    });
    // The writer's versions still match the rows: the next transition lands too.
    transition('HEALTHY');
    await writer.barrier();

    expect(conflicts).toEqual([]);
    const history = await store.history({ actorId: 'replica:r1', limit: 100 });
    expect(history.items.map((h) => `${h.from_state}→${h.to_state}`)).toEqual([
      'null→STARTING',
      'STARTING→HEALTHY',
      'HEALTHY→UNHEALTHY',
      'UNHEALTHY→HEALTHY',
    ]);
    expect(await version()).toBe(4);
    const [row] = (await store.loadSnapshots()).filter((r) => r.actor_id === 'replica:r1');
    expect(row?.state).toBe('HEALTHY');
    expect(errors.length).toBeGreaterThan(0);
  }, 60_000);
});
