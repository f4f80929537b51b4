/**
 * The autoscaling cooldown is persisted: a manual scale stamps `last_scaled_at` on the
 * deployment row, and a coordinator restarted within the cooldown still holds (and says so in
 * the history) instead of scaling at once. A deployment never scaled acts on the same load.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryHealthStore } from '../../../src/health/memory-health-store.ts';
import { Runtime } from '../../../src/runtime/runtime.ts';
import type { LoadReport } from '../../../src/scaling/load-report.ts';
import type { Store } from '../../../src/store/store.ts';
import { FakeBackend } from '../../harness/fake-backend.ts';
import { isolatedDatabase } from '../../harness/isolation.ts';
import {
  echoCommand,
  openTestStore,
  reportAll,
  type StoreKind,
} from '../../harness/runtime-fixture.ts';
import { waitFor } from '../../harness/wait.ts';

const open: Array<{ runtime: Runtime; store: Store }> = [];
afterEach(async () => {
  for (const o of open.splice(0)) {
    await o.runtime.close();
    await o.store.close();
  }
});

/** A runtime whose only proxy reports 10 requests in flight for every deployment. */
function loadedRuntime(store: Store, backend: FakeBackend, health = createMemoryHealthStore()) {
  const runtime: Runtime = new Runtime({
    store,
    backend,
    health,
    config: {
      healthCheckIntervalS: 3600,
      evictionIntervalS: 3600,
      scalingIntervalS: 3600,
      shards: 4,
    },
    loadReports: async () => {
      const report: LoadReport = { proxy: 'test', at: Date.now(), deployments: {} };
      for (const t of runtime.tracked.all()) {
        report.deployments[t.id] = {
          name: t.name,
          inflight: 10,
          queued: 0,
          requests: 0,
          concurrency_ms: 0,
          latency: [],
        };
      }
      return [report];
    },
  });
  return { runtime, health };
}

const policy = { target_metric: 'inflight', target_value: 2, cooldown_period: 600 };

// PostgreSQL only: the embedded store runs the same SQL, and last_scaled_at is in the store
// conformance suite for both adapters.
describe.each(['postgres'] as const)('autoscaling cooldown on %s', (kind: StoreKind) => {
  it('a manual scale starts the cooldown, and a restart within it still holds', async (ctx) => {
    const { url } = await isolatedDatabase(ctx);
    const store = await openTestStore(kind, url);
    const backend = new FakeBackend();
    const first = loadedRuntime(store, backend);
    await first.runtime.start();
    const held = await first.runtime.createDeployment({
      ...echoCommand('held', 1),
      min_replicas: 1,
      max_replicas: 5,
      scaling_policy: policy,
    });
    await first.runtime.createDeployment({
      ...echoCommand('free', 1),
      min_replicas: 1,
      max_replicas: 5,
      scaling_policy: policy,
    });
    await waitFor(() => first.runtime.probeTargets().length === 2);
    await reportAll(first.runtime, first.health);
    await waitFor(async () => (await first.runtime.get('held')).state === 'RUNNING');
    await waitFor(async () => (await first.runtime.get('free')).state === 'RUNNING');

    const before = Date.now();
    await first.runtime.scale('held', 2);
    const stamped = (await store.getDeployment(held.id))?.last_scaled_at;
    expect(stamped).not.toBeNull();
    expect(Date.parse(stamped ?? '')).toBeGreaterThanOrEqual(before - 1_000);
    await first.runtime.close();

    // The restarted coordinator: same rows, same (fake) replicas.
    const second = loadedRuntime(store, backend, first.health);
    open.push({ runtime: second.runtime, store });
    await second.runtime.start();
    await waitFor(() => second.runtime.probeTargets().length === 3);
    await reportAll(second.runtime, second.health);
    await waitFor(async () => (await second.runtime.get('held')).healthy_replicas === 2);
    await second.runtime.scaling.evaluate();

    // `free` was never scaled: 10 in flight on 1 replica is above its threshold, it scales.
    expect((await second.runtime.get('free')).target_replicas).toBe(2);
    // `held` waits out the cooldown its manual scale started before the restart.
    const view = await second.runtime.get('held');
    expect(view.target_replicas).toBe(2);
    expect(view.autoscaling?.last).toMatch(/held up \(cooldown\)/);
    expect(view.autoscaling?.last).toMatch(/cooldown 600 s \(\d+ s left\)/);
    const rows = await waitFor(async () => {
      const items = (await store.history({ deploymentId: held.id, limit: 1000 })).items;
      return items.some((r) => r.event === 'autoscale.held') ? items : null;
    });
    const hold = rows.find((r) => r.event === 'autoscale.held');
    expect(hold?.reason).toMatch(/inflight 10 .* on 2 HEALTHY replica\(s\)/);
    expect(hold?.to_state).toBe('RUNNING');
  });
});
