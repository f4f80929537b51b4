/**
 * Route drain with proxies in their own processes: a coordinator, two `serve --role proxy`
 * processes and a prober, sharing PostgreSQL and Redis. Long requests are in flight through
 * both proxies when the deployment scales from 2 to 1: they complete with 200, no new request
 * reaches the removed replica, and its route reaches TERMINATED only after they ended (the
 * coordinator waits for the proxies' in-flight reports in Redis).
 */
import { describe, expect, it } from 'vitest';
import { createClusterProxies } from '../../src/runtime/cluster-proxies.ts';
import { deploy, echoDeployment, replicaHits, useCluster } from '../harness/cluster-role.ts';
import { services } from '../harness/isolation.ts';
import { waitFor } from '../harness/wait.ts';

const { startRole, prefix } = useCluster('drain');

interface View {
  id: string;
  state: string;
  replicas: Array<{ id: string; route_id: string; endpoint: string | null }>;
  routes: Array<{ id: string; replica_id: string; state: string }>;
}

interface EventRow {
  actor_id: string;
  to_state: string;
  at: string;
}

/** A chat completion the echo server answers after LONG_WORDS x 20 ms (its token latency). */
const LONG_WORDS = 200;

describe('route drain with proxies in other processes', () => {
  it('a scale-down lets requests in flight at every proxy finish before the route is TERMINATED', async () => {
    const coordinator = await startRole('coordinator');
    const [p1, p2] = await Promise.all([startRole('proxy'), startRole('proxy')]);
    await startRole('prober');
    const api = coordinator.api!;
    const res = await deploy(api, echoDeployment(2));
    expect(res.status).toBe(201);
    const get = async () => (await (await fetch(`${api}/v1/deployments/echo`)).json()) as View;
    const running = await waitFor(
      async () => {
        const v = await get();
        return v.state === 'RUNNING' && v.routes.filter((r) => r.state === 'HEALTHY').length === 2
          ? v
          : null;
      },
      { timeoutMs: 60_000, message: 'echo RUNNING with two HEALTHY routes' },
    );
    const proxies = [p1!.proxy!, p2!.proxy!];
    for (const proxy of proxies) {
      await waitFor(async () => new Set(await replicaHits(proxy, 6)).size === 2, {
        timeoutMs: 10_000,
        message: `${proxy} routes to both replicas`,
      });
    }

    // Two long requests through each proxy: round robin puts one on each replica.
    const text = Array.from({ length: LONG_WORDS }, (_, i) => `w${i}`).join(' ');
    const long = (proxy: string) =>
      fetch(`${proxy}/echo/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'echo', messages: [{ role: 'user', content: text }] }),
      }).then(async (r) => ({
        status: r.status,
        replica: r.headers.get('x-flotilla-replica') ?? '',
        body: await r.text(),
        endedAt: Date.now(),
      }));
    const inflight = [long(proxies[0]!), long(proxies[0]!), long(proxies[1]!), long(proxies[1]!)];
    // Both proxies report their requests in Redis before the scale-down.
    const reader = createClusterProxies({ url: services().redisUrl, keyPrefix: prefix });
    try {
      await waitFor(
        async () => {
          const reports = [...(await reader.reports()).values()];
          const perProxy = reports.map((r) => [...r.counts.values()].reduce((a, b) => a + b, 0));
          return perProxy.length === 2 && perProxy.every((n) => n === 2);
        },
        { timeoutMs: 3_000, message: 'both proxies report 2 requests in flight' },
      );
    } finally {
      await reader.close();
    }

    const scaled = await fetch(`${api}/v1/deployments/${running.id}/scale`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ replicas: 1 }),
    });
    expect(scaled.status).toBe(200);
    const draining = await waitFor(
      async () => {
        const v = await get();
        const gone = running.routes.find(
          (r) => v.routes.find((x) => x.id === r.id)?.state !== 'HEALTHY',
        );
        return gone ?? null;
      },
      { timeoutMs: 5_000, message: 'one route leaves HEALTHY after the scale-down' },
    );
    const victim = draining.replica_id;
    // New requests leave the draining replica alone (after the table reaches the proxies).
    for (const proxy of proxies) {
      await waitFor(async () => !(await replicaHits(proxy, 4)).includes(victim), {
        timeoutMs: 2_000,
        intervalMs: 20,
        message: `${proxy} stops sending to ${victim}`,
      });
    }
    const checkedAt = Date.now();
    const after = [
      ...(await replicaHits(proxies[0]!, 10)),
      ...(await replicaHits(proxies[1]!, 10)),
    ];
    expect(after).toHaveLength(20);
    expect(after.filter((id) => id === victim)).toEqual([]);

    const results = await Promise.all(inflight);
    for (const r of results) {
      expect(r.status, r.body).toBe(200);
      expect(r.body).toContain(`w${LONG_WORDS - 1}`);
    }
    const onVictim = results.filter((r) => r.replica === victim);
    expect(onVictim.length).toBeGreaterThan(0);
    // The route was still draining while new requests were checked above.
    expect(Math.max(...onVictim.map((r) => r.endedAt))).toBeGreaterThan(checkedAt);

    const terminatedAt = await waitFor(
      async () => {
        const page = (await (
          await fetch(`${api}/v1/deployments/${running.id}/events?limit=1000`)
        ).json()) as { items: EventRow[] };
        const row = page.items.find(
          (e) => e.actor_id === `route:${draining.id}` && e.to_state === 'TERMINATED',
        );
        return row ? Date.parse(row.at) : null;
      },
      { timeoutMs: 40_000, message: `route ${draining.id} reaches TERMINATED` },
    );
    const lastEnd = Math.max(...onVictim.map((r) => r.endedAt));
    // The proxy counts a request done when the replica's answer is through, a moment before
    // this client has read it: 100 ms of slack between the two processes' views (a drain that
    // did not wait would be TERMINATED about 4 s earlier).
    expect(terminatedAt).toBeGreaterThanOrEqual(lastEnd - 100);
    console.log(
      `[drain] route TERMINATED ${terminatedAt - lastEnd} ms after the last request on it ended`,
    );
  });
});
