/**
 * One Flotilla cluster as separate processes, as an operator runs it: a coordinator (API and
 * actors), two proxies and a prober, sharing PostgreSQL and Redis. Both proxies route the
 * deployment the coordinator runs; a replica that fails its readiness check leaves both
 * proxies' rotation within about a second.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeploymentView } from '../../src/index.ts';
import { stopChildren } from '../harness/child-processes.ts';
import { startRole as startRoleIn } from '../harness/cluster-role.ts';
import { createDatabase } from '../harness/isolation.ts';
import { waitFor } from '../harness/wait.ts';

const dbName = `flotilla_roles_${randomBytes(4).toString('hex')}`;
const prefix = `roles:${dbName}:`;
let databaseUrl = '';
const children: ChildProcess[] = [];

const cluster = {
  get databaseUrl() {
    return databaseUrl;
  },
  prefix,
  children,
};
const startRole = (role: string, extra: string[] = []) => startRoleIn(cluster, role, extra);

beforeAll(async () => {
  databaseUrl = await createDatabase(dbName);
});

afterAll(async () => {
  await stopChildren(children);
});

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
    const res = await fetch(`${api}/v1/deployments`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'echo',
        model_path: 'examples/echo',
        replicas: 2,
        health_check: { interval_s: 0.5, timeout_s: 0.5, unhealthy_threshold: 2 },
      }),
    });
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
    const hits = async (proxy: string, n: number) => {
      const seen: string[] = [];
      for (let i = 0; i < n; i++) {
        const r = await fetch(`${proxy}/echo/v1/models`);
        if (r.status === 200) seen.push(r.headers.get('x-flotilla-replica') ?? '');
        else await r.arrayBuffer();
      }
      return seen;
    };
    for (const proxy of proxies) {
      await waitFor(async () => new Set(await hits(proxy, 6)).size === 2, {
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
      await waitFor(async () => !(await hits(proxy, 4)).includes(victim.id), {
        timeoutMs: 10_000,
        intervalMs: 50,
        message: `${proxy} stops sending to ${victim.id}`,
      });
    }
    console.log(
      `[roles] readiness failure -> out of both proxies' rotation in ${(performance.now() - t0).toFixed(0)} ms (probe interval 500 ms)`,
    );
    const after = await hits(proxies[0]!, 10);
    expect(after.length).toBe(10);
    expect(after.every((id) => id !== victim.id)).toBe(true);
  });
});
