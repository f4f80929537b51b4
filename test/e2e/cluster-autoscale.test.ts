/**
 * Concurrency autoscaling with proxies in their own processes: a coordinator, two
 * `serve --role proxy` processes and a prober, sharing PostgreSQL and Redis. Each proxy carries
 * 2 requests in flight (closed loop); with `target_value: 3` neither proxy alone asks for a
 * second replica, so the deployment scales up only if the coordinator sums the proxies' load
 * reports (4 in flight: 2 replicas; counted twice, 8: 3). The target is not a divisor of the
 * load: at 4 against 2 the panic rule sat on its boundary, and a request overlapping its
 * successor for a millisecond (4.001 in flight) made it ask for 3. When the load stops it scales back down, after the panic and the cooldown.
 */
import { describe, expect, it } from 'vitest';
import { createClusterProxies } from '../../src/runtime/cluster-proxies.ts';
import { deploy, echoDeployment, useCluster } from '../harness/cluster-role.ts';
import { services } from '../harness/isolation.ts';
import { waitFor } from '../harness/wait.ts';

const { startRole, prefix } = useCluster('autoscale');

interface View {
  id: string;
  state: string;
  target_replicas: number;
  healthy_replicas: number;
  autoscaling?: { metric: string; state: string; last: string | null };
}

interface EventRow {
  event: string;
  reason: string | null;
}

/** 25 words at the echo server's 20 ms per token: each request takes about 500 ms. */
const WORDS = 25;

describe('concurrency autoscaling with a coordinator and two proxy processes', () => {
  it('scales up on the load summed over both proxies and back down when it stops', async () => {
    const coordinator = await startRole('coordinator');
    const [p1, p2] = await Promise.all([startRole('proxy'), startRole('proxy')]);
    await startRole('prober');
    const api = coordinator.api!;
    const res = await deploy(
      api,
      echoDeployment(1, {
        scaling_policy: {
          target_metric: 'concurrency',
          target_value: 3,
          min_replicas: 1,
          max_replicas: 3,
          cooldown_period: 3,
          stable_window_s: 6,
          panic_window_s: 2,
        },
      }),
    );
    expect(res.status, await res.clone().text()).toBe(201);
    const get = async () => (await (await fetch(`${api}/v1/deployments/echo`)).json()) as View;
    const events = async () => {
      const r = await fetch(`${api}/v1/deployments/echo/events?limit=1000`);
      return ((await r.json()) as { items: EventRow[] }).items.filter((e) =>
        e.event.startsWith('autoscale.'),
      );
    };
    await waitFor(async () => (await get()).healthy_replicas === 1, {
      timeoutMs: 60_000,
      message: 'echo RUNNING with one HEALTHY replica',
    });
    const proxies = [p1!.proxy!, p2!.proxy!];
    for (const proxy of proxies) {
      await waitFor(async () => (await fetch(`${proxy}/echo/v1/models`)).status === 200, {
        timeoutMs: 10_000,
        message: `${proxy} routes to echo`,
      });
    }

    // Closed loop: 2 workers per proxy, each sends its next request when the last one ends.
    let loading = true;
    const statuses: number[] = [];
    const text = Array.from({ length: WORDS }, (_, i) => `w${i}`).join(' ');
    const worker = async (proxy: string) => {
      while (loading) {
        const r = await fetch(`${proxy}/echo/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'echo', messages: [{ role: 'user', content: text }] }),
        });
        await r.arrayBuffer();
        statuses.push(r.status);
      }
    };
    const loadStart = Date.now();
    const workers = proxies.flatMap((p) => [worker(p), worker(p)]);

    try {
      // Both proxies publish their load: each sees 2 in flight, not 4.
      const reader = createClusterProxies({ url: services().redisUrl, keyPrefix: prefix });
      try {
        await waitFor(
          async () => {
            const reports = await reader.loadReports();
            const busy = reports.filter((r) =>
              Object.values(r.deployments).some((d) => d.name === 'echo' && d.inflight > 0),
            );
            return busy.length === 2 &&
              busy.every((r) => Object.values(r.deployments).every((d) => d.inflight <= 2))
              ? reports
              : null;
          },
          { timeoutMs: 10_000, message: 'both proxies report echo requests in flight' },
        );
      } finally {
        await reader.close();
      }

      const up = await waitFor(
        async () => {
          const v = await get();
          return v.target_replicas >= 2 && v.healthy_replicas >= 2 ? v : null;
        },
        { timeoutMs: 60_000, message: 'echo scaled up to 2 HEALTHY replicas' },
      );
      const upAfterMs = Date.now() - loadStart;
      expect(up.autoscaling?.metric).toBe('concurrency');
      const scaledUp = await waitFor(
        async () =>
          (await events()).find(
            (e) => e.event === 'autoscale.scaled' && /\(up/.test(e.reason ?? ''),
          ),
        { timeoutMs: 5_000, message: 'the scale-up is in the events API' },
      );
      expect(scaledUp.reason).toMatch(/^scaled 1 -> 2 \(up/);
      // The inputs are in the event: metric and windows, value per replica, target, bounds.
      expect(scaledUp.reason).toMatch(/concurrency .* over the panic window 2 s/);
      expect(scaledUp.reason).toMatch(/target 3 per replica/);
      expect(scaledUp.reason).toMatch(/bounds 1\.\.3/);
      expect(scaledUp.reason).toMatch(/cooldown 3 s/);
      // 4 requests in flight want 2 replicas, not 3: the load is counted once.
      expect((await get()).target_replicas).toBe(2);
      console.log(`[autoscale] load step -> second replica HEALTHY: ${upAfterMs} ms`);
    } finally {
      loading = false;
      await Promise.all(workers);
    }
    const loadStop = Date.now();
    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);

    const down = await waitFor(
      async () => {
        const v = await get();
        return v.target_replicas === 1 ? v : null;
      },
      { timeoutMs: 60_000, message: 'echo scaled back down to 1 replica' },
    );
    console.log(
      `[autoscale] load stop -> scaled down to 1: ${Date.now() - loadStop} ms (the 6 s stable average falls to one replica's worth; cooldown 3 s)`,
    );
    expect(down.state).toBe('RUNNING');
    // The history row is written beside the scale (an outbox): wait for it, do not race it.
    const scaledDown = await waitFor(
      async () =>
        (await events()).find(
          (e) => e.event === 'autoscale.scaled' && /\(down/.test(e.reason ?? ''),
        ),
      { timeoutMs: 5_000, message: 'the scale-down is in the events API' },
    );
    expect(scaledDown.reason).toMatch(/^scaled 2 -> 1 \(down\)/);
    expect(scaledDown.reason).toMatch(/removes /);
  });
});
