/**
 * One Flotilla cluster as separate processes, as an operator runs it: a coordinator (API and
 * actors), two proxies and a prober, sharing PostgreSQL and Redis. Both proxies route the
 * deployment the coordinator runs; a replica that fails its readiness check leaves both
 * proxies' rotation within about a second.
 */
import { describe, expect, it } from 'vitest';
import type { DeploymentView } from '../../src/index.ts';
import { deploy, echoDeployment, replicaHits, useCluster } from '../harness/cluster-role.ts';
import { waitFor } from '../harness/wait.ts';

const { startRole } = useCluster('roles');

describe('cluster roles as separate processes', () => {
  it('proxies and a prober in their own processes follow the coordinator through Redis', async () => {
    const coordinator = await startRole('coordinator');
    const [p1, p2] = await Promise.all([startRole('proxy'), startRole('proxy')]);
    const prober = await startRole('prober');
    // Every process answers /health on its API port.
    for (const base of [p1!.proxy_api!, p2!.proxy_api!, prober.prober!]) {
      expect((await fetch(`${base}/health`)).status).toBe(200);
    }
    const api = coordinator.api!;
    const res = await deploy(api, echoDeployment(2));
    expect(res.status).toBe(201);
    const get = async () =>
      (await (await fetch(`${api}/v1/deployments/echo`)).json()) as DeploymentView;
    const running = await waitFor(
      async () => {
        const v = await get();
        return v.state === 'RUNNING' && v.routes.filter((r) => r.state === 'HEALTHY').length === 2
          ? v
          : null;
      },
      {
        timeoutMs: 60_000,
        message: 'echo RUNNING with two HEALTHY routes (probed by the prober process)',
      },
    );

    const proxies = [p1!.proxy!, p2!.proxy!];
    for (const proxy of proxies) {
      await waitFor(async () => new Set(await replicaHits(proxy, 6)).size === 2, {
        timeoutMs: 10_000,
        message: `${proxy} routes to both replicas`,
      });
    }

    // One replica fails readiness: it leaves both proxies' rotation.
    const victim = running.replicas[0]!;
    const t0 = performance.now();
    await fetch(`${victim.endpoint}/admin/health`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ok: false }),
    });
    for (const proxy of proxies) {
      await waitFor(async () => !(await replicaHits(proxy, 4)).includes(victim.id), {
        timeoutMs: 10_000,
        intervalMs: 50,
        message: `${proxy} stops sending to ${victim.id}`,
      });
    }
    console.log(
      `[roles] readiness failure -> out of both proxies' rotation in ${(performance.now() - t0).toFixed(0)} ms (probe interval 500 ms)`,
    );
    const after = await replicaHits(proxies[0]!, 10);
    expect(after.length).toBe(10);
    expect(after.every((id) => id !== victim.id)).toBe(true);
  });
});
