/**
 * A command cut by a crash between its row and the actor's snapshot (issue 15, the fault
 * suite's "rolling update interrupted by a kill -9 does not resume", seed 1103303728): the
 * PATCH wrote the new revision and the deployment row's revision_id, then the coordinator died
 * before the deployment actor's snapshot with that revision reached PostgreSQL. The restarted
 * coordinator restores the actor on the old revision while the row (what the API shows) names
 * the new one; restore must re-drive the rollout to the row's revision (and a scale likewise
 * to the row's target). Real PostgreSQL, through the runtime's restore path (`Runtime.start`).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { modelRevisionSpecSchema } from '../../../src/domain/revision.ts';
import type { Runtime } from '../../../src/runtime/runtime.ts';
import { generateSession } from '../../../src/session-generators/index.ts';
import type { Store } from '../../../src/store/store.ts';
import { isolatedDatabase } from '../../harness/isolation.ts';
import {
  echoCommand,
  openTestStore,
  reportAll,
  testRuntime,
} from '../../harness/runtime-fixture.ts';
import { waitFor } from '../../harness/wait.ts';

const open: Array<{ runtime: Runtime; store?: Store }> = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) {
    await o.runtime.close();
    await o.store?.close();
  }
});

/** A deployment RUNNING with two HEALTHY replicas, then the runtime stopped (as by a crash). */
async function runningThenStopped(store: Store) {
  const first = testRuntime({ store });
  open.push({ runtime: first.runtime });
  await first.runtime.start();
  const created = await first.runtime.createDeployment(echoCommand('roll', 2));
  await waitFor(() => first.runtime.probeTargets().length === 2, { timeoutMs: 30_000 });
  await reportAll(first.runtime, first.health);
  await waitFor(async () => (await first.runtime.get('roll')).state === 'RUNNING', {
    timeoutMs: 30_000,
  });
  await first.runtime.close();
  return { ...first, id: created.id, oldRevision: created.revision_id };
}

describe('restore re-drives a command its crash cut short (PostgreSQL)', () => {
  it('the row has a revision the restored actor never got: the rollout runs to it', async (ctx) => {
    const { url } = await isolatedDatabase(ctx);
    const store = await openTestStore('postgres', url);
    const first = await runningThenStopped(store);

    // What the PATCH wrote before the kill (DeploymentCommands.update, before `ref.send`).
    const revision = modelRevisionSpecSchema.parse({
      runtime_variant: 'cmd',
      command: ['sleep', '2000'],
      health_check: { healthy_threshold: 1, unhealthy_threshold: 2, startup_timeout_s: 60 },
    });
    await store.addRevision({
      id: 'rev-2',
      deployment_id: first.id,
      number: 2,
      spec: revision,
      session: generateSession(revision),
    });
    await store.updateDeployment(first.id, { revision_id: 'rev-2' });

    // The restarted coordinator: same database, same (still running) sessions.
    const second = testRuntime({ store, backend: first.backend, health: first.health });
    open.push({ runtime: second.runtime, store });
    await second.runtime.start();
    const view = await waitFor(
      async () => {
        await reportAll(second.runtime, second.health);
        const v = await second.runtime.get('roll');
        const done =
          v.state === 'RUNNING' &&
          v.replicas.length === 2 &&
          v.replicas.every((r) => r.state === 'HEALTHY' && r.revision_id === 'rev-2');
        return done ? v : null;
      },
      { timeoutMs: 60_000, intervalMs: 100, message: 'every replica HEALTHY on rev-2' },
    );
    expect(view.revision_id).toBe('rev-2');
    // The old revision's sessions were stopped by the rollout, not left running.
    expect(first.backend.live.size).toBe(2);
    const started = first.backend.events.filter((e) => e.op === 'start').map((e) => e.replicaId);
    expect(started).toHaveLength(4);
    expect(new Set(started).size).toBe(4);
    expect(first.oldRevision).not.toBe('rev-2');
  }, 120_000);

  it('the row has a target the restored actor never got: it scales to it', async (ctx) => {
    const { url } = await isolatedDatabase(ctx);
    const store = await openTestStore('postgres', url);
    const first = await runningThenStopped(store);

    // A scale's row written, the actor's snapshot with the new target not (the other order
    // of the same race: the row is what the API shows).
    await store.updateDeployment(first.id, { target_replicas: 3 });

    const second = testRuntime({ store, backend: first.backend, health: first.health });
    open.push({ runtime: second.runtime, store });
    await second.runtime.start();
    await waitFor(
      async () => {
        await reportAll(second.runtime, second.health);
        const v = await second.runtime.get('roll');
        return v.replicas.length === 3 && v.replicas.every((r) => r.state === 'HEALTHY');
      },
      { timeoutMs: 60_000, intervalMs: 100, message: 'three HEALTHY replicas' },
    );
    expect(first.backend.live.size).toBe(3);
  }, 120_000);
});
