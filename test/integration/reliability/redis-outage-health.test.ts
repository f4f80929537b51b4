/**
 * Issue 15 defect "health goes blind while Redis is down": all-in-one with `--redis-url`, a
 * replica whose /health starts answering 503 while Redis is stopped must leave rotation (its
 * route UNHEALTHY, the proxy sends it nothing) during the outage, not seconds after Redis
 * returns: the in-process prober's results reach the classifier and the proxy without Redis.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createFlotilla, type Flotilla } from '../../../src/index.ts';
import { isolatedDatabase } from '../../harness/isolation.ts';
import { spawnRedis } from '../../harness/services.ts';
import { waitFor } from '../../harness/wait.ts';

const repo = resolve(import.meta.dirname, '../../..');
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

const quiet = { info() {}, warn() {}, error() {} };

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

describe('health while Redis is down (all-in-one, --redis-url)', () => {
  it('a replica whose /health fails during the outage leaves rotation during the outage', async (ctx) => {
    const redis = await spawnRedis();
    cleanups.push(() => redis.stop());
    const { url } = await isolatedDatabase(ctx);
    const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-redis-blind-'));
    cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    const f = await createFlotilla({
      databaseUrl: url,
      redisUrl: redis.url,
      redisKeyPrefix: 'blind:',
      dataDir,
      modelRoots: [repo],
      logger: quiet,
      runtime: {
        // The tick is slow on purpose: the change must come from the fast path, not a tick.
        healthCheckIntervalS: 5,
        evictionIntervalS: 3600,
        shards: 1,
        deploymentDefaults: { drain_timeout_s: 1, terminate_timeout_s: 2, backoff_base_s: 30 },
      },
    });
    cleanups.push(() => f.close());
    await f.deploy({
      name: 'echo',
      model_path: 'examples/echo',
      replicas: 2,
      health_check: {
        interval_s: 0.3,
        timeout_s: 0.5,
        healthy_threshold: 1,
        unhealthy_threshold: 2,
        startup_timeout_s: 30,
      },
    });
    const v = await running(f, 'echo', 2);
    const victim = v.replicas[0] as (typeof v.replicas)[number];
    const victimRoute = v.routes.find((r) => r.replica_id === victim.id);
    expect(victimRoute).toBeDefined();

    await redis.stop();
    const t0 = performance.now();
    const res = await fetch(`${victim.endpoint}/admin/health`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ok: false }),
    });
    expect(res.status).toBe(200);

    // Within 5 s (Redis stays down for the rest of the test, so before the fix: never).
    await waitFor(
      async () =>
        (await f.get('echo')).routes.find((r) => r.id === victimRoute?.id)?.state === 'UNHEALTHY',
      { timeoutMs: 5_000, intervalMs: 20, message: 'victim route UNHEALTHY while Redis is down' },
    );
    const leftMs = performance.now() - t0;
    console.log(
      `[redis-outage-health] route UNHEALTHY ${leftMs.toFixed(0)} ms after /health failed (Redis down)`,
    );

    // The proxy sends it nothing: every request lands on the other replica.
    const served = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      const r = await fetch(`${f.proxyUrl}/echo/v1/models`);
      await r.arrayBuffer();
      const id = r.headers.get('x-flotilla-replica') ?? `status ${r.status}`;
      served.set(id, (served.get(id) ?? 0) + 1);
    }
    expect(served.get(victim.id) ?? 0).toBe(0);
    expect([...served.values()].reduce((a, b) => a + b, 0)).toBe(20);
  });
});
