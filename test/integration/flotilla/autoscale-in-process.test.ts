/**
 * All-in-one mode (`createFlotilla` with its proxy in the same process, no Redis): the
 * autoscaler reads the in-process proxy's counters directly. A `requests` policy sees the
 * request rate through the proxy and adds a replica.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createFlotilla, type Flotilla } from '../../../src/index.ts';
import { isolatedDatabase } from '../../harness/isolation.ts';
import { waitFor } from '../../harness/wait.ts';

const repo = resolve(import.meta.dirname, '../../..');
let flotilla: Flotilla | null = null;
afterEach(async () => {
  await flotilla?.close();
  flotilla = null;
});

describe('autoscaling with the proxy in the same process', () => {
  it('a requests policy adds a replica on the rate through the in-process proxy', async (ctx) => {
    const { url } = await isolatedDatabase(ctx);
    flotilla = await createFlotilla({
      databaseUrl: url,
      dataDir: mkdtempSync(join(tmpdir(), 'flotilla-autoscale-')),
      modelRoots: [repo],
      runtime: { healthCheckIntervalS: 1, shards: 2, scalingIntervalS: 0.5 },
    });
    const f = flotilla;
    await f.deploy({
      name: 'echo',
      model_path: 'examples/echo',
      replicas: 1,
      health_check: { interval_s: 0.5, timeout_s: 0.5 },
      scaling_policy: {
        target_metric: 'requests',
        target_value: 5,
        max_replicas: 2,
        cooldown_period: 1,
        stable_window_s: 3,
      },
    });
    await waitFor(async () => (await f.get('echo')).healthy_replicas === 1, {
      timeoutMs: 30_000,
      message: 'echo RUNNING with one HEALTHY replica',
    });
    await waitFor(() => f.routingTable().deployments[0]?.routes[0]?.state === 'HEALTHY');

    // About 50 requests per second on one replica, ten times the target.
    let loading = true;
    const load = (async () => {
      while (loading) {
        const r = await fetch(`${f.proxyUrl}/echo/v1/models`);
        await r.arrayBuffer();
        await new Promise((res) => setTimeout(res, 20));
      }
    })();
    try {
      const v = await waitFor(
        async () => {
          const x = await f.get('echo');
          return x.target_replicas === 2 ? x : null;
        },
        { timeoutMs: 30_000, message: 'echo scaled to 2 replicas on its request rate' },
      );
      expect(v.autoscaling?.metric).toBe('requests');
      const rows = await waitFor(async () => {
        const items = (await f.events('echo', { limit: 1000 })).items;
        return items.find((e) => e.event === 'autoscale.scaled') ?? null;
      });
      expect(rows.reason).toMatch(/^scaled 1 -> 2 \(up\): .* > scale_up_threshold/);
      expect(rows.reason).toMatch(/requests [\d.]+\/s over [\d.]+ s on 1 HEALTHY replica/);
    } finally {
      loading = false;
      await load;
    }
  });
});
