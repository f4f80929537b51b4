import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createFlotilla, type Flotilla } from '../../../src/index.ts';
import { isolatedDatabase, isolatedPrefix, services } from '../../harness/isolation.ts';
import { replicaPids } from '../../harness/replica-processes.ts';
import { waitFor } from '../../harness/wait.ts';

const repo = resolve(import.meta.dirname, '../../..');
let flotilla: Flotilla | null = null;
afterEach(async () => {
  await flotilla?.close();
  flotilla = null;
});

describe('embedded API with real replicas', () => {
  it('deploys the echo example, serves it through the proxy, and deletes it without leftovers', async (ctx) => {
    const { url } = await isolatedDatabase(ctx);
    const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-e2e-'));
    flotilla = await createFlotilla({
      databaseUrl: url,
      redisUrl: services().redisUrl,
      redisKeyPrefix: isolatedPrefix(ctx),
      dataDir,
      modelRoots: [repo],
      runtime: { healthCheckIntervalS: 1, shards: 2 },
    });
    const f = flotilla;
    const d = await f.deploy({
      name: 'echo',
      model_path: 'examples/echo',
      replicas: 2,
      admission: { max_concurrent_requests: 5 },
    });
    expect(d.admission).toEqual({ max_concurrent_requests: 5 });
    expect(d.state).toMatch(/PENDING|PROVISIONING/);
    const running = await waitFor(
      async () => {
        const v = await f.get('echo');
        return v.state === 'RUNNING' && v.healthy_replicas === 2 ? v : null;
      },
      { timeoutMs: 30_000, message: 'echo did not reach RUNNING with 2 HEALTHY replicas' },
    );
    expect(running.routes.map((r) => r.state)).toEqual(['HEALTHY', 'HEALTHY']);
    await waitFor(
      () =>
        f.routingTable().deployments[0]?.routes.filter((r) => r.state === 'HEALTHY').length === 2,
    );

    // The deployment's admission settings reach the data plane: 5 per HEALTHY replica.
    await waitFor(() => f.proxy?.status('echo').capacity === 10, {
      message: 'proxy capacity 2 x 5',
    });
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${f.proxyUrl}/echo/v1/models`);
      expect(res.status).toBe(200);
      seen.add(res.headers.get('x-flotilla-replica') ?? '');
    }
    expect([...seen].sort()).toEqual(running.replicas.map((r) => r.id).sort());

    await f.destroy('echo');
    await waitFor(async () => (await f.get('echo')).state === 'TERMINATED', { timeoutMs: 30_000 });
    const ids = running.replicas.map((r) => r.id);
    await waitFor(() => [...replicaPids(ids).values()].every((p) => p.length === 0), {
      timeoutMs: 10_000,
      message: () => `replica processes left: ${JSON.stringify([...replicaPids(ids)])}`,
    });
  });
});

describe('rolling update with real replicas', () => {
  it('PATCH rolls out a new revision replica by replica, never with fewer HEALTHY replicas than before', async (ctx) => {
    const { url } = await isolatedDatabase(ctx);
    flotilla = await createFlotilla({
      databaseUrl: url,
      dataDir: mkdtempSync(join(tmpdir(), 'flotilla-roll-')),
      modelRoots: [repo],
      runtime: {
        healthCheckIntervalS: 0.25,
        shards: 2,
        deploymentDefaults: { drain_timeout_s: 2 },
      },
    });
    const f = flotilla;
    const health = {
      interval_s: 0.25,
      timeout_s: 0.5,
      healthy_threshold: 1,
      unhealthy_threshold: 2,
    };
    await f.deploy({
      name: 'echo',
      model_path: 'examples/echo',
      replicas: 2,
      health_check: health,
    });
    const before = await waitFor(
      async () => {
        const v = await f.get('echo');
        return v.state === 'RUNNING' && v.healthy_replicas === 2 ? v : null;
      },
      { timeoutMs: 30_000 },
    );
    const updated = await f.update('echo', { environ: { ECHO_MODEL: 'echo-v2' } });
    expect(updated.revision_id).not.toBe(before.revision_id);
    let minHealthy = Number.POSITIVE_INFINITY;
    const done = await waitFor(
      async () => {
        const v = await f.get('echo');
        minHealthy = Math.min(minHealthy, v.healthy_replicas);
        const allNew =
          v.replicas.length === 2 &&
          v.replicas.every((r) => r.revision_id === v.revision_id && r.state === 'HEALTHY');
        return allNew ? v : null;
      },
      {
        timeoutMs: 60_000,
        intervalMs: 25,
        message: 'both replicas on the new revision and HEALTHY',
      },
    );
    console.log(`[rolling] fewest HEALTHY replicas seen during the rollout: ${minHealthy} (of 2)`);
    expect(minHealthy).toBeGreaterThanOrEqual(2);
    expect(done.replicas.map((r) => r.id)).not.toEqual(before.replicas.map((r) => r.id));
    const models = (await (await fetch(`${done.replicas[0]!.endpoint}/v1/models`)).json()) as {
      data: Array<{ id: string }>;
    };
    expect(models.data[0]!.id).toBe('echo-v2');
  });
});
