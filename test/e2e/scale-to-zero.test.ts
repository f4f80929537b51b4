/**
 * Scale to zero as processes: a coordinator, a separate proxy and a prober sharing PostgreSQL
 * and Redis. A deployment with `min_replicas: 0` and `scale_to_zero_after_s` drains to zero
 * replicas once idle (RUNNING, status says why); 20 concurrent first requests through the
 * separate proxy are held, the proxy asks the coordinator through Redis, exactly one replica
 * starts, and every request answers 200. Idle again, it goes back to zero and a single first
 * request answers 200.
 */
import { describe, expect, it } from 'vitest';
import type { DeploymentView } from '../../src/index.ts';
import { deploy, useCluster } from '../harness/cluster-role.ts';
import { waitFor } from '../harness/wait.ts';

const { startRole } = useCluster('zero');

type View = DeploymentView & {
  scale_to_zero?: { after_s: number; at_zero: boolean; message: string | null };
};
interface Events {
  items: Array<{ actor_id: string; kind: string; to_state: string; reason: string | null }>;
}

describe('scale to zero through a separate proxy', () => {
  it('goes to zero when idle; 20 concurrent first requests start exactly one replica and all answer 200', async () => {
    const coordinator = await startRole('coordinator');
    const [p, prober] = await Promise.all([startRole('proxy'), startRole('prober')]);
    expect(prober.prober).toBeTruthy();
    const api = coordinator.api!;
    const proxy = p.proxy!;
    const res = await deploy(api, {
      name: 'lazy',
      model_path: 'examples/echo',
      replicas: 1,
      min_replicas: 0,
      scaling_policy: { min_replicas: 0, scale_to_zero_after_s: 2 },
      health_check: { interval_s: 0.5, timeout_s: 0.5 },
    });
    expect(res.status).toBe(201);
    const get = async () => (await (await fetch(`${api}/v1/deployments/lazy`)).json()) as View;
    const events = async (id: string) =>
      (await (await fetch(`${api}/v1/deployments/${id}/events?limit=1000`)).json()) as Events;
    const replicaActors = async (id: string) =>
      new Set((await events(id)).items.filter((e) => e.kind === 'replica').map((e) => e.actor_id));

    // Idle: RUNNING with one replica, then drained to zero, still RUNNING, and status says why.
    const atZero = async () => {
      const v = await get();
      return v.state === 'RUNNING' && v.target_replicas === 0 && v.current_replicas === 0
        ? v
        : null;
    };
    const zero = await waitFor(atZero, { timeoutMs: 90_000, message: 'lazy scaled to zero' });
    expect(zero.scale_to_zero).toEqual({
      after_s: 2,
      at_zero: true,
      message: 'scaled to zero after 2 s idle; the next request activates it',
    });
    await waitFor(
      async () =>
        (await events(zero.id)).items.some(
          (e) => e.kind === 'deployment' && e.reason === 'scaled to zero after 2 s idle',
        ),
      { message: 'the scale to zero in the history' },
    );
    const before = await replicaActors(zero.id);

    // 20 concurrent first requests through the separate proxy.
    const t0 = performance.now();
    const answers = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const r = await fetch(`${proxy}/lazy/v1/models`);
        return {
          status: r.status,
          replica: r.headers.get('x-flotilla-replica'),
          text: await r.text(),
        };
      }),
    );
    const ms = performance.now() - t0;
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(new Set(answers.map((a) => a.replica)).size).toBe(1);
    console.log(`[zero] 20 concurrent first requests at zero answered 200 in ${ms.toFixed(0)} ms`);
    const after = await get();
    expect(after.target_replicas).toBe(1);
    const started = [...(await replicaActors(zero.id))].filter((a) => !before.has(a));
    expect(started).toHaveLength(1);
    const activations = async () =>
      (await events(zero.id)).items.filter(
        (e) => e.kind === 'deployment' && e.reason === 'activated by a request held at the proxy',
      ).length;
    await waitFor(async () => (await activations()) >= 1, { message: 'the activation event' });
    expect(await activations()).toBe(1);

    // Idle again: back to zero; one first request answers 200.
    await waitFor(atZero, { timeoutMs: 60_000, message: 'lazy scaled to zero again' });
    const one = await fetch(`${proxy}/lazy/v1/models`);
    expect(one.status).toBe(200);
    expect(((await one.json()) as { data: unknown[] }).data.length).toBeGreaterThan(0);
  });
});
