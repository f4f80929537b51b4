/**
 * Autoscaling on CPU, end to end as processes: `flotilla serve` (real PostgreSQL and Redis), the
 * echo server as a `cmd` replica requesting half a core, a `cpu` policy with explicit thresholds
 * and a 2 s cooldown, the autoscaler ticking every second (`--scaling-interval 1`). The replica
 * is told to spin (`POST /admin/burn`, child processes in its process group, which the process
 * backend samples whole): a second replica is added; told to stop, the deployment goes back to
 * one replica after the cooldown. Every decision is read from serve's JSON log.
 */
import { describe, expect, it } from 'vitest';
import type { DeploymentView } from '../../src/index.ts';
import { deploy, type RoleProcess, useCluster } from '../harness/cluster-role.ts';
import { waitFor } from '../harness/wait.ts';

const { spawnRole } = useCluster('cpu');
let serve: RoleProcess | undefined;
/** serve's stdout and stderr (its JSON log) so far, for decisions and failure messages. */
const log = () => (serve ? `${serve.stdout()}\n${serve.stderr()}` : '');

interface Autoscaled {
  msg: string;
  from: number;
  to: number;
  reason: string;
  at: string;
}

/** The autoscaler's decisions so far, from serve's JSON log lines. */
function decisions(): Autoscaled[] {
  return (serve?.stderr() ?? '')
    .split('\n')
    .slice(0, -1) // the last piece is '' or a line still being written
    .filter((l) => l.includes('"autoscaled"'))
    .map((l) => JSON.parse(l) as Autoscaled)
    .filter((e) => e.msg === 'autoscaled');
}

describe('autoscaling on cpu, as processes', () => {
  it('a CPU-burning replica makes a cpu policy add a replica, and removing the load removes it after the cooldown', async () => {
    serve = await spawnRole('all', ['--scaling-interval', '1']);
    const api = (await serve.waitLine('api ')).text.slice(4);
    const res = await deploy(api, {
      name: 'burner',
      model_path: 'examples/echo',
      replicas: 1,
      min_replicas: 1,
      max_replicas: 2,
      resource_slots: { cpu: 0.5, mem: '128m' },
      health_check: { interval_s: 0.5, timeout_s: 1, unhealthy_threshold: 3 },
      scaling_policy: {
        target_metric: 'cpu',
        target_value: 15,
        scale_up_threshold: 20,
        scale_down_threshold: 5,
        cooldown_period: 2,
      },
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const get = async () =>
      (await (await fetch(`${api}/v1/deployments/burner`)).json()) as DeploymentView;
    const healthy = (v: DeploymentView) => v.routes.filter((r) => r.state === 'HEALTHY').length;
    const one = await waitFor(
      async () => {
        const v = await get();
        return v.state === 'RUNNING' && healthy(v) === 1 ? v : null;
      },
      { timeoutMs: 90_000, message: () => `burner RUNNING with one HEALTHY route\n${log()}` },
    );
    const endpoint = one.replicas[0]!.endpoint!;
    const burn = async (seconds: number) => {
      const r = await fetch(`${endpoint}/admin/burn`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        // Four spinning processes: on a loaded machine each gets a fraction of a core.
        body: JSON.stringify({ seconds, cores: 4 }),
      });
      expect(r.status).toBe(200);
    };
    expect(decisions(), 'no decision while the replica is idle at min_replicas').toEqual([]);

    await burn(300);
    const up = await waitFor(
      async () => {
        const v = await get();
        // The decision is logged right after the scale command returns.
        return v.target_replicas === 2 && healthy(v) === 2 && decisions().length > 0 ? v : null;
      },
      { timeoutMs: 120_000, message: () => `a second HEALTHY replica\n${log()}` },
    );
    expect(up.replicas.filter((r) => r.state !== 'TERMINATED')).toHaveLength(2);
    const first = decisions()[0]!;
    expect(first).toMatchObject({ from: 1, to: 2 });
    // The decision with its inputs (src/scaling/autoscaler.ts): metric, value, thresholds.
    expect(first.reason).toMatch(
      /^scaled 1 -> 2 \(up\): \d+(\.\d+)? > scale_up_threshold 20 \| cpu \d+(\.\d+)? % averaged over /,
    );

    await burn(0);
    await waitFor(
      async () => {
        const v = await get();
        const scaledIn = decisions().some((e) => e.to < e.from);
        return v.target_replicas === 1 && healthy(v) === 1 && scaledIn ? v : null;
      },
      { timeoutMs: 120_000, message: () => `back to one replica\n${log()}` },
    );
    const all = decisions();
    console.log(
      `autoscaler decisions: ${JSON.stringify(all.map(({ from, to, reason, at }) => ({ from, to, reason, at })))}`,
    );
    const down = all.find((e) => e.to < e.from)!;
    expect(down).toMatchObject({ from: 2, to: 1 });
    expect(down.reason).toMatch(
      /^scaled 2 -> 1 \(down\): \d+(\.\d+)? < scale_down_threshold 5; removes \S+ .* \| cpu /,
    );
    // Consecutive decisions are at least the cooldown apart.
    for (let i = 1; i < all.length; i++) {
      expect(Date.parse(all[i]!.at) - Date.parse(all[i - 1]!.at)).toBeGreaterThanOrEqual(2000);
    }
  }, 300_000);
});
