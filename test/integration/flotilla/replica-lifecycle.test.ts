/**
 * Replica sessions through the whole stack (real echo processes): a replica that dies is seen
 * at once and comes back; a coordinator restart adopts the running replicas without duplicates.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createFlotilla, type Flotilla, type FlotillaOptions } from '../../../src/index.ts';
import { isolatedDatabase } from '../../harness/isolation.ts';
import { replicaPids } from '../../harness/replica-processes.ts';
import { waitFor } from '../../harness/wait.ts';

const repo = resolve(import.meta.dirname, '../../..');
const open: Flotilla[] = [];
afterEach(async () => {
  for (const f of open.splice(0)) await f.close();
});

const HEALTH = {
  interval_s: 0.5,
  timeout_s: 0.5,
  healthy_threshold: 1,
  unhealthy_threshold: 2,
  startup_timeout_s: 30,
};

async function flotillaOn(
  ctx: Parameters<typeof isolatedDatabase>[0],
  extra: Partial<FlotillaOptions> = {},
) {
  const { url } = await isolatedDatabase(ctx);
  const opts: FlotillaOptions = {
    databaseUrl: url,
    dataDir: mkdtempSync(join(tmpdir(), 'flotilla-replicas-')),
    modelRoots: [repo],
    proxy: false,
    runtime: { healthCheckIntervalS: 0.25, shards: 2, deploymentDefaults: { backoff_base_s: 0.5 } },
    ...extra,
  };
  const f = await createFlotilla(opts);
  open.push(f);
  return { f, opts };
}

async function healthy(f: Flotilla, n: number) {
  return waitFor(
    async () => {
      const v = await f.get('echo');
      return v.state === 'RUNNING' && v.healthy_replicas === n ? v : null;
    },
    { timeoutMs: 40_000, message: `echo with ${n} HEALTHY replicas` },
  );
}

describe('replica sessions through the runtime', () => {
  it('a replica killed on its own is reported at once, restarted, and the process count returns to three', async (ctx) => {
    const { f } = await flotillaOn(ctx);
    await f.deploy({
      name: 'echo',
      model_path: 'examples/echo',
      replicas: 3,
      health_check: HEALTH,
    });
    const v = await healthy(f, 3);
    const ids = v.replicas.map((r) => r.id);
    const pids = replicaPids(ids);
    expect([...pids.values()].map((p) => p.length)).toEqual([1, 1, 1]);
    const victim = ids[0]!;
    const t0 = performance.now();
    process.kill(pids.get(victim)![0]!, 'SIGKILL');
    await waitFor(
      async () =>
        (await f.get('echo')).replicas.find((r) => r.id === victim)?.state === 'UNHEALTHY',
      {
        timeoutMs: 5_000,
        intervalMs: 10,
      },
    );
    console.log(
      `[replicas] kill -9 -> replica UNHEALTHY in ${(performance.now() - t0).toFixed(0)} ms`,
    );
    const back = await healthy(f, 3);
    expect(back.replicas.find((r) => r.id === victim)?.restarts).toBe(1);
    const after = replicaPids(back.replicas.map((r) => r.id));
    expect([...after.values()].map((p) => p.length)).toEqual([1, 1, 1]);
    expect(after.get(victim)![0]).not.toBe(pids.get(victim)![0]);
  });

  it('a coordinator restart adopts the running replicas: same pids, no duplicate process', async (ctx) => {
    const { f, opts } = await flotillaOn(ctx, { keepReplicas: true });
    await f.deploy({
      name: 'echo',
      model_path: 'examples/echo',
      replicas: 2,
      health_check: HEALTH,
    });
    const v = await healthy(f, 2);
    const ids = v.replicas.map((r) => r.id);
    const before = replicaPids(ids);
    await f.close();
    open.splice(open.indexOf(f), 1);
    expect(replicaPids(ids)).toEqual(before);

    const g = await createFlotilla({ ...opts, keepReplicas: false });
    open.push(g);
    const again = await healthy(g, 2);
    expect(again.replicas.map((r) => r.id)).toEqual(ids);
    expect(replicaPids(ids)).toEqual(before);
    await g.destroy('echo');
    await waitFor(async () => (await g.get('echo')).state === 'TERMINATED', { timeoutMs: 30_000 });
    expect([...replicaPids(ids).values()].flat()).toEqual([]);
  });
});

describe('node capacity', () => {
  it('a deployment that can never fit the node goes to ERROR and says why; nothing is started', async (ctx) => {
    const { f } = await flotillaOn(ctx, { capacity: { gpu: 0 } });
    await f.deploy({
      name: 'echo',
      model_path: 'examples/echo',
      replicas: 1,
      resource_slots: { gpu: 2 },
    });
    const v = await waitFor(async () => {
      const d = await f.get('echo');
      return d.state === 'ERROR' ? d : null;
    });
    expect(v.reason).toMatch(/insufficient gpu: requested 2, the node has 0 in total/);
    expect(v.replicas).toEqual([]);
  });

  it('a replica that does not fit the free capacity is not started and the deployment shows why', async (ctx) => {
    const { f } = await flotillaOn(ctx, { capacity: { cpu: 1 } });
    await f.deploy({
      name: 'echo',
      model_path: 'examples/echo',
      replicas: 2,
      resource_slots: { cpu: 0.75 },
      health_check: HEALTH,
    });
    const v = await waitFor(
      async () => {
        const d = await f.get('echo');
        return d.healthy_replicas === 1 && /insufficient cpu/.test(d.reason ?? '') ? d : null;
      },
      { timeoutMs: 30_000, message: 'one replica HEALTHY, the other refused for cpu' },
    );
    console.log(`[capacity] status reason: ${v.reason}`);
    const pids = replicaPids(v.replicas.map((r) => r.id));
    expect([...pids.values()].flat()).toHaveLength(1);
  });
});

describe('passive outlier detection through the stack', () => {
  it('a dead replica is ejected by the proxy on live traffic, no request fails, and the ejection is in the history', async (ctx) => {
    const { f } = await flotillaOn(ctx, {
      proxy: {},
      // A slow prober, so the proxy's own detection is what reacts first.
      runtime: { healthCheckIntervalS: 30, shards: 2, deploymentDefaults: { backoff_base_s: 30 } },
    });
    await f.deploy({
      name: 'echo',
      model_path: 'examples/echo',
      replicas: 2,
      health_check: { interval_s: 0.5, timeout_s: 0.5 },
      // 3 per replica, so capacity 6 says the proxy serves both replicas.
      admission: { max_concurrent_requests: 3 },
    });
    const v = await waitFor(
      async () => {
        const d = await f.get('echo');
        return d.state === 'RUNNING' && d.routes.filter((r) => r.state === 'HEALTHY').length === 2
          ? d
          : null;
      },
      { timeoutMs: 40_000 },
    );
    await waitFor(() => f.proxy?.status('echo').capacity === 6);
    const victim = v.replicas[0]!;
    const pid = replicaPids([victim.id]).get(victim.id)![0]!;
    process.kill(pid, 'SIGKILL');
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) {
      const res = await fetch(`${f.proxyUrl}/echo/v1/models`);
      statuses.push(res.status);
      await res.arrayBuffer();
    }
    expect(statuses.every((s) => s === 200)).toBe(true);
    const ejected = await waitFor(async () =>
      (await f.events('echo', { limit: 1000 })).items.find(
        (h) => h.event === 'outlier.ejected' && h.actor_id === `route:${victim.route_id}`,
      ),
    );
    expect(ejected.reason).toMatch(
      /ejected by the proxy for \d+ ms after \d+ consecutive failures/,
    );
  });
});
