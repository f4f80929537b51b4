/**
 * The documented health flow end to end, with real Redis, real probers and real echo replicas:
 * readiness fails -> route UNHEALTHY -> eviction -> TERMINATING -> TERMINATED -> a new replica
 * becomes HEALTHY; a stopped prober makes routes DEGRADED after the TTL and HEALTHY again when
 * it returns; stale data is DEGRADED.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { HealthStore } from '../../../src/health/health-store.ts';
import { createProber, type Prober } from '../../../src/health/prober.ts';
import { createRedisHealthStore } from '../../../src/health/redis-health-store.ts';
import { createFlotilla, type Flotilla } from '../../../src/index.ts';
import { isolatedDatabase, isolatedPrefix, services } from '../../harness/isolation.ts';
import { waitFor } from '../../harness/wait.ts';

const repo = resolve(import.meta.dirname, '../../..');
const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => {});
});

const FAST_HEALTH = {
  interval_s: 0.5,
  timeout_s: 0.5,
  healthy_threshold: 1,
  unhealthy_threshold: 2,
  startup_timeout_s: 30,
};

async function start(
  ctx: Parameters<typeof isolatedDatabase>[0],
  opts: { prober: boolean; ttlS?: number; evictionS?: number },
) {
  const { url } = await isolatedDatabase(ctx);
  const prefix = isolatedPrefix(ctx);
  const f = await createFlotilla({
    databaseUrl: url,
    redisUrl: services().redisUrl,
    redisKeyPrefix: prefix,
    dataDir: mkdtempSync(join(tmpdir(), 'flotilla-health-')),
    modelRoots: [repo],
    prober: opts.prober,
    routeHealthTtlS: opts.ttlS ?? 120,
    proxy: false,
    runtime: {
      healthCheckIntervalS: 0.25,
      evictionIntervalS: opts.evictionS ?? 3600,
      maxHealthStalenessS: 300,
      shards: 2,
      deploymentDefaults: { drain_timeout_s: 2, terminate_timeout_s: 2, backoff_base_s: 30 },
    },
  });
  cleanup.push(() => f.close());
  return { f, prefix };
}

async function running(f: Flotilla, name: string, replicas: number) {
  return waitFor(
    async () => {
      const v = await f.get(name);
      return v.state === 'RUNNING' &&
        v.routes.filter((r) => r.state === 'HEALTHY').length === replicas
        ? v
        : null;
    },
    { timeoutMs: 40_000, message: `${name} RUNNING with ${replicas} HEALTHY routes` },
  );
}

describe('health pipeline with real replicas', () => {
  it('a failing /health makes the route UNHEALTHY, eviction terminates it and a new replica becomes HEALTHY', async (ctx) => {
    const { f } = await start(ctx, { prober: true, evictionS: 0.5 });
    await f.deploy({
      name: 'echo',
      model_path: 'examples/echo',
      replicas: 2,
      health_check: FAST_HEALTH,
    });
    const v = await running(f, 'echo', 2);
    const victim = v.replicas[0]!;
    const victimRoute = v.routes.find((r) => r.replica_id === victim.id)!;

    const t0 = performance.now();
    const res = await fetch(`${victim.endpoint}/admin/health`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ok: false }),
    });
    expect(res.status).toBe(200);
    const seen = new Set<string>();
    await waitFor(
      async () => {
        const route = (await f.get('echo')).routes.find((r) => r.id === victimRoute.id);
        if (route) seen.add(route.state);
        return route === undefined || route.state !== 'HEALTHY';
      },
      { timeoutMs: 10_000, intervalMs: 10 },
    );
    console.log(
      `[health] detection: /admin/health {ok:false} -> route left HEALTHY in ${(performance.now() - t0).toFixed(0)} ms (probe interval 500 ms)`,
    );

    // Eviction terminates the route, the replica is regenerated and becomes HEALTHY.
    const after = await waitFor(
      async () => {
        const d = await f.get('echo');
        const fresh = d.replicas.filter(
          (r) => r.id !== victim.id && r.id !== v.replicas[1]!.id && r.state === 'HEALTHY',
        );
        return !d.routes.some((r) => r.id === victimRoute.id) && fresh.length === 1 ? d : null;
      },
      { timeoutMs: 40_000, message: 'victim route gone and a new replica HEALTHY' },
    );
    expect(after.healthy_replicas).toBe(2);
    const history = (await f.events('echo', { limit: 1000 })).items.filter(
      (h) => h.actor_id === `route:${victimRoute.id}`,
    );
    expect(history.map((h) => h.to_state)).toEqual(
      expect.arrayContaining(['UNHEALTHY', 'TERMINATING', 'TERMINATED']),
    );
    const order = history.map((h) => h.to_state);
    expect(order.indexOf('UNHEALTHY')).toBeLessThan(order.indexOf('TERMINATING'));
    expect(order.indexOf('TERMINATING')).toBeLessThan(order.indexOf('TERMINATED'));
  });

  it('routes go DEGRADED when the prober stops (TTL expiry) and HEALTHY again when it returns', async (ctx) => {
    const { f, prefix } = await start(ctx, { prober: false });
    const store: HealthStore = createRedisHealthStore({
      url: services().redisUrl,
      keyPrefix: prefix,
    });
    cleanup.push(() => store.close());
    const makeProber = (): Prober =>
      createProber({
        store,
        proberId: `test-${Math.random()}`,
        targets: () => f.runtime.probeTargets(),
        ttlS: 2,
      });
    let prober = makeProber();
    prober.start();
    cleanup.push(() => prober.stop());
    await f.deploy({
      name: 'echo',
      model_path: 'examples/echo',
      replicas: 2,
      health_check: FAST_HEALTH,
    });
    await running(f, 'echo', 2);

    await prober.stop();
    const degraded = await waitFor(
      async () => {
        const d = await f.get('echo');
        return d.routes.every((r) => r.state === 'DEGRADED') ? d : null;
      },
      { timeoutMs: 15_000, message: 'routes DEGRADED after the TTL' },
    );
    expect(degraded.routes[0]!.last_health?.reason).toMatch(
      /no health data: prober not running or Redis unreachable/,
    );
    expect(degraded.reason).toMatch(/DEGRADED: no health data/);
    // Fail static: DEGRADED routes stay in the routing table for the proxy.
    expect(f.routingTable().deployments[0]!.routes.map((r) => r.state)).toEqual([
      'DEGRADED',
      'DEGRADED',
    ]);

    prober = makeProber();
    prober.start();
    await running(f, 'echo', 2);
  });

  it('stale health data (checked_at older than the staleness limit) classifies the route DEGRADED', async (ctx) => {
    const { f, prefix } = await start(ctx, { prober: false });
    const store = createRedisHealthStore({ url: services().redisUrl, keyPrefix: prefix });
    cleanup.push(() => store.close());
    await f.deploy({
      name: 'echo',
      model_path: 'examples/echo',
      replicas: 1,
      health_check: FAST_HEALTH,
    });
    const target = await waitFor(() => f.runtime.probeTargets()[0]);
    const record = (checkedAt: number) => ({
      routeId: target.routeId,
      ready: true,
      status: 200,
      latency_ms: 1,
      checked_at: checkedAt,
      consecutive_successes: 1,
      consecutive_failures: 0,
      error: null,
    });
    await store.write(record(Date.now()), 120);
    await running(f, 'echo', 1);
    await store.write(record(Date.now() - 301_000), 120);
    const d = await waitFor(
      async () => {
        const v = await f.get('echo');
        return v.routes[0]?.state === 'DEGRADED' ? v : null;
      },
      { timeoutMs: 10_000 },
    );
    expect(d.routes[0]!.last_health?.reason).toMatch(/health data stale: last check 30\ds ago/);
  });
});
