/**
 * An activation (scale to zero's way back up) is one scale: the deployment actor is told its
 * new target once, so it writes its scaled snapshot once and the deployment row's target once
 * (real PostgreSQL, fake replicas). Counted at the store, the one place every write goes.
 */
import { isDeepStrictEqual } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { deploymentActorId } from '../../../machines/deployment.ts';
import type { Runtime } from '../../../src/runtime/runtime.ts';
import type { ActorWrite, Store } from '../../../src/store/store.ts';
import { isolatedDatabase } from '../../harness/isolation.ts';
import {
  echoCommand,
  openTestStore,
  reportAll,
  testRuntime,
} from '../../harness/runtime-fixture.ts';
import { waitFor } from '../../harness/wait.ts';

const open: Array<{ runtime: Runtime; store: Store }> = [];
afterEach(async () => {
  for (const o of open.splice(0)) {
    await o.runtime.close();
    await o.store.close();
  }
});

/** The store, with every actor write and every deployment-row target change recorded. */
function recording(store: Store) {
  const writes: ActorWrite[] = [];
  const targets: number[] = [];
  const wrapped: Store = Object.create(store);
  wrapped.writeActors = (w) => {
    writes.push(...w);
    return store.writeActors(w);
  };
  wrapped.updateDeployment = (id, patch) => {
    if (patch.target_replicas !== undefined) targets.push(patch.target_replicas);
    return store.updateDeployment(id, patch);
  };
  return { store: wrapped, writes, targets };
}

describe('activation', () => {
  it('writes the scaled deployment once: no snapshot written twice the same, one target update', async (ctx) => {
    const { url } = await isolatedDatabase(ctx);
    const real = await openTestStore('postgres', url);
    const rec = recording(real);
    const { runtime, health } = testRuntime({ store: rec.store });
    open.push({ runtime, store: real });
    await runtime.start();
    const d = await runtime.createDeployment({
      ...echoCommand('lazy', 1),
      scaling_policy: { min_replicas: 0, scale_to_zero_after_s: 600 },
    });
    await waitFor(() => runtime.probeTargets().length === 1);
    await reportAll(runtime, health);
    await waitFor(async () => (await runtime.get('lazy')).state === 'RUNNING');
    await runtime.scale('lazy', 0);
    await waitFor(async () => (await runtime.get('lazy')).current_replicas === 0);
    await runtime.writer.barrier();

    rec.writes.length = 0;
    rec.targets.length = 0;
    expect(await runtime.activate(d.id)).toBe(true);
    await waitFor(() => runtime.probeTargets().length === 1, { message: 'the new replica' });
    await runtime.writer.barrier();

    const actorId = deploymentActorId(d.id);
    const own = rec.writes.filter((w) => w.actorId === actorId);
    const repeated = own.filter(
      (w, i) => i > 0 && isDeepStrictEqual(w.snapshot, own[i - 1]!.snapshot),
    );
    expect(repeated).toHaveLength(0);
    const target = (w: ActorWrite) =>
      (w.snapshot as { context: { target: number } }).context.target;
    expect(own.length).toBeGreaterThan(0);
    expect(own.every((w) => target(w) === 1)).toBe(true);
    expect(rec.targets).toEqual([1]);
    // One history row says so.
    const rows = (await real.history({ deploymentId: d.id, limit: 1000 })).items;
    expect(rows.filter((r) => r.event === 'deployment.activated')).toHaveLength(1);
  });
});
