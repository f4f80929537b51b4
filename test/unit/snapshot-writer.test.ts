import { describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { SnapshotWriter } from '../../src/runtime/snapshot-writer.ts';
import type { ActorWrite, Store } from '../../src/store/store.ts';
import { waitFor } from '../harness/wait.ts';

/** A store that records writeActors calls and fails the first `failures` of them. */
function recordingStore(failures = 0) {
  const batches: ActorWrite[][] = [];
  /** Every call, the failed ones included (a copy of what was sent). */
  const attempts: ActorWrite[][] = [];
  let left = failures;
  const store = {
    async writeActors(writes: ActorWrite[]) {
      attempts.push(structuredClone(writes));
      if (left-- > 0) throw new Error('database unavailable');
      batches.push(writes);
      return { conflicts: [] };
    },
  } as unknown as Store;
  return { store, batches, attempts };
}

/** Lets promise callbacks (the writer's flush) run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

const tree = { value: 'RUNNING', children: { 'replica:r1': { snapshot: { value: 'HEALTHY' } } } };

/** Records a transition of replica r1 (deployment d1) to `to`. */
function recordReplica(w: SnapshotWriter, to: string): void {
  w.record({
    actorId: 'replica:r1',
    kind: 'replica',
    deploymentId: 'd1',
    to,
    event: 'transition',
    reason: null,
    at: new Date(),
  });
}

describe('snapshot writer', () => {
  it('writes a burst of transitions in one batch, in order, with increasing versions and from-states', async () => {
    const { store, batches } = recordingStore();
    const w = new SnapshotWriter(store, { persisted: () => tree });
    for (const to of ['STARTING', 'HEALTHY', 'UNHEALTHY', 'HEALTHY']) recordReplica(w, to);
    await w.barrier();
    expect(batches).toHaveLength(1);
    const replicaWrites = batches[0]!.filter((x) => x.actorId === 'replica:r1');
    expect(
      replicaWrites.map((x) => [x.transition?.from, x.transition?.to, x.expectedVersion]),
    ).toEqual([
      [null, 'STARTING', 0],
      ['STARTING', 'HEALTHY', 1],
      ['HEALTHY', 'UNHEALTHY', 2],
      ['UNHEALTHY', 'HEALTHY', 3],
    ]);
    // The deployment's subtree is written with the batch.
    expect(batches[0]!.some((x) => x.actorId === 'deployment:d1' && x.snapshot === tree)).toBe(
      true,
    );
  });

  it('rejects the barrier when the database fails, keeps the writes, and lands them on retry', async () => {
    const { store, batches } = recordingStore(1);
    const errors: unknown[] = [];
    // A manual clock: the retry pause (1 s) passes when the test says so, not on the wall.
    const clock = new SimulatedClock();
    const w = new SnapshotWriter(
      store,
      { persisted: () => tree },
      { onError: (e) => errors.push(e), clock },
    );
    recordReplica(w, 'STARTING');
    const first = w.barrier();
    clock.increment(2); // the flush delay
    await expect(first).rejects.toThrow(/database unavailable/);
    await settle();
    clock.increment(999);
    await settle();
    expect(batches).toHaveLength(0); // no retry before the pause is over
    clock.increment(1); // the retry pause ends: the writer schedules a flush
    clock.increment(2);
    await waitFor(
      async () => {
        await settle();
        // The failed batch as it was, then the deployment's subtree as it is now.
        return batches.length >= 1;
      },
      {
        timeoutMs: 5_000,
        message: 'the retry wrote the batch',
      },
    );
    expect(errors).toHaveLength(1);
    const write = batches[0]!.find((x) => x.actorId === 'replica:r1')!;
    expect([write.transition?.from, write.transition?.to, write.expectedVersion]).toEqual([
      null,
      'STARTING',
      0,
    ]);
    const last = w.barrier();
    clock.increment(2);
    await last;
  });

  it('settled() resolves for readers where barrier() rejects, and the writes stay queued', async () => {
    const { store, batches, attempts } = recordingStore(1);
    const clock = new SimulatedClock();
    const w = new SnapshotWriter(store, { persisted: () => tree }, { onError: () => {}, clock });
    recordReplica(w, 'STARTING');
    const barrier = w.barrier();
    const settled = w.settled();
    clock.increment(2); // the flush delay
    await expect(barrier).rejects.toThrow(/database unavailable/);
    await expect(settled).resolves.toBeUndefined();
    expect(attempts).toHaveLength(1);
    expect(batches).toHaveLength(0);
    // Still queued: the retry after the pause lands it, and settled() then waits for it.
    clock.increment(1_000);
    const after = w.settled();
    clock.increment(2);
    await after;
    // The failed batch as it was (then the deployment's subtree as it is now).
    expect(batches.length).toBeGreaterThanOrEqual(1);
    expect(batches[0]!.some((x) => x.actorId === 'replica:r1')).toBe(true);
  });

  it('sends a failed batch again exactly as it was, before any newer transition (it may have committed)', async () => {
    const { store, batches, attempts } = recordingStore(1);
    const clock = new SimulatedClock();
    const w = new SnapshotWriter(store, { persisted: () => tree }, { onError: () => {}, clock });
    const note = (to: string) => ({
      actorId: 'replica:r1',
      kind: 'replica' as const,
      deploymentId: 'd1',
      to,
      event: 'transition',
      reason: null,
      at: new Date(0),
    });
    w.record(note('STARTING'));
    const first = w.barrier();
    clock.increment(2);
    await expect(first).rejects.toThrow(/database unavailable/);
    // A transition while the failed batch waits for its retry.
    w.record(note('HEALTHY'));
    const next = w.barrier();
    clock.increment(1_000);
    clock.increment(2);
    await next;
    // The retry is the failed attempt, write for write: same versions, same content. Merged
    // with HEALTHY it would have been another write at the same version (a conflict if the
    // first attempt had in fact committed).
    expect(batches[0]).toEqual(attempts[0]);
    const healthy = batches
      .slice(1)
      .flat()
      .filter((x) => x.actorId === 'replica:r1');
    expect(healthy.map((x) => [x.transition?.from, x.transition?.to, x.expectedVersion])).toEqual([
      ['STARTING', 'HEALTHY', 1],
    ]);
  });
});
