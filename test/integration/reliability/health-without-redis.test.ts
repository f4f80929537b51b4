/**
 * Issue 15: all-in-one with --redis-url, a replica whose /health answers 503 during a Redis
 * outage kept its traffic for the whole outage. The in-process prober's results reach the
 * runtime (and so the proxy) without Redis in the loop.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createFlotilla } from '../../../src/index.ts';
import { isolatedDatabase } from '../../harness/isolation.ts';
import { spawnRedis } from '../../harness/services.ts';
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

describe('health while Redis is down (all-in-one)', () => {
  it('a replica failing readiness during a Redis outage leaves HEALTHY and the proxy rotation within 5 s', async (ctx) => {
    const { url } = await isolatedDatabase(ctx);
    // A Redis of its own: this test stops it.
    const redis = await spawnRedis();
    cleanup.push(() => redis.stop());
    const f = await createFlotilla({
      databaseUrl: url,
      redisUrl: redis.url,
      redisKeyPrefix: 'blind:',
      dataDir: mkdtempSync(join(tmpdir(), 'flotilla-blind-')),
      modelRoots: [repo],
      runtime: {
        healthCheckIntervalS: 0.25,
        evictionIntervalS: 3600,
        maxHealthStalenessS: 300,
        shards: 2,
        deploymentDefaults: { drain_timeout_s: 2, terminate_timeout_s: 2, backoff_base_s: 30 },
      },
    });
    cleanup.push(() => f.close());
    await f.deploy({
      name: 'echo',
      model_path: 'examples/echo',
      replicas: 2,
      health_check: FAST_HEALTH,
    });
    const v = await waitFor(
      async () => {
        const d = await f.get('echo');
        return d.state === 'RUNNING' && d.routes.filter((r) => r.state === 'HEALTHY').length === 2
          ? d
          : null;
      },
      { timeoutMs: 40_000, message: 'echo RUNNING with 2 HEALTHY routes' },
    );
    const victim = v.replicas[0];
    const victimRoute = v.routes.find((r) => r.replica_id === victim?.id);
    if (!victim || !victimRoute) throw new Error('no replica to fail');

    await redis.stop();
    await waitFor(async () => !(await f.ready()).ready, { message: 'ready() sees Redis down' });

    const t0 = Date.now();
    const states = new Set<string>();
    const res = await fetch(`${victim.endpoint}/admin/health`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ok: false }),
    });
    expect(res.status).toBe(200);
    await waitFor(
      async () => {
        const route = (await f.get('echo')).routes.find((r) => r.id === victimRoute.id);
        states.add(route?.state ?? 'gone');
        return route === undefined || route.state === 'UNHEALTHY';
      },
      {
        timeoutMs: 5_000,
        intervalMs: 20,
        message: () => `the failing route UNHEALTHY (seen: ${[...states].join(', ')})`,
      },
    );
    // The healthy one keeps serving: health data did not go stale for it either.
    const other = (await f.get('echo')).routes.find((r) => r.id !== victimRoute.id);
    expect(other?.state).toBe('HEALTHY');
    const table = f.routingTable().deployments.find((d) => d.name === 'echo');
    const entry = table?.routes.find((r) => r.routeId === victimRoute.id);
    expect(entry === undefined || entry.state !== 'HEALTHY').toBe(true);
    console.log(
      `[health] Redis down: route UNHEALTHY in ${Date.now() - t0} ms (states seen: ${[...states].join(', ')})`,
    );
  });
});
