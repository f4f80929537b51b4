import { afterEach, describe, expect, it } from 'vitest';
import type { Runtime } from '../../../src/runtime/runtime.ts';
import type { Store } from '../../../src/store/store.ts';
import { isolatedDatabase } from '../../harness/isolation.ts';
import {
  echoCommand,
  openTestStore,
  reportAll,
  type StoreKind,
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

describe.each(['postgres', 'embedded'] as const)('runtime on %s', (kind: StoreKind) => {
  it('drives a deployment to RUNNING, scales it, deletes it, and keeps its history', async (ctx) => {
    const { url } = await isolatedDatabase(ctx);
    const store = await openTestStore(kind, url);
    const { runtime, backend, health } = testRuntime({ store });
    open.push({ runtime, store });
    await runtime.start();

    const created = await runtime.createDeployment(echoCommand('echo', 2));
    expect(created.state).toMatch(/PENDING|PROVISIONING/);
    await waitFor(() => runtime.probeTargets().length === 2, { message: 'two probe targets' });
    await reportAll(runtime, health);
    await waitFor(async () => (await runtime.get('echo')).state === 'RUNNING');
    expect(backend.live.size).toBe(2);

    await runtime.scale('echo', 3);
    await waitFor(() => runtime.probeTargets().length === 3);
    await reportAll(runtime, health);
    await waitFor(async () => (await runtime.get('echo')).healthy_replicas === 3);

    await runtime.scale('echo', 1);
    await waitFor(() => backend.live.size === 1, { message: () => `live ${backend.live.size}` });

    await runtime.destroy('echo');
    await waitFor(async () => (await runtime.get('echo')).state === 'TERMINATED');
    expect(backend.live.size).toBe(0);
    const history = await store.history({ deploymentId: created.id, limit: 500 });
    const deploymentStates = history.items
      .filter((h) => h.kind === 'deployment')
      .map((h) => h.to_state);
    expect(deploymentStates).toEqual([
      'PENDING',
      'PROVISIONING',
      'RUNNING',
      'DESTROYING',
      'TERMINATED',
    ]);
  });

  it('restores every actor in its persisted state after a restart and adopts live sessions', async (ctx) => {
    const { url } = await isolatedDatabase(ctx);
    const store = await openTestStore(kind, url);
    const first = testRuntime({ store });
    await first.runtime.start();
    await first.runtime.createDeployment(echoCommand('a', 2));
    await first.runtime.createDeployment(echoCommand('b', 1));
    await waitFor(() => first.runtime.probeTargets().length === 3);
    await reportAll(first.runtime, first.health);
    await waitFor(async () => (await first.runtime.get('a')).state === 'RUNNING');
    await waitFor(async () => (await first.runtime.get('b')).state === 'RUNNING');
    const before = first.runtime.actorStates();
    await first.runtime.close();

    // Same backend object: its sessions are still running, as real replicas would be.
    const second = testRuntime({ store, backend: first.backend, health: first.health });
    open.push({ runtime: second.runtime, store });
    const { restoredDeployments } = await second.runtime.start();
    expect(restoredDeployments).toBe(2);
    expect(second.runtime.actorStates()).toEqual(before);
    expect(first.backend.events.filter((e) => e.op === 'start')).toHaveLength(3);
    await waitFor(() => second.runtime.routingTable().deployments.length === 2);
  });
});
