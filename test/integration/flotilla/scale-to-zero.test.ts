/**
 * Scale to zero in one process (runtime + in-process proxy, real PostgreSQL, echo replicas as
 * processes): idle past `scale_to_zero_after_s` the deployment drains to zero and stays
 * RUNNING, the view says why, and the first request through the in-process proxy activates
 * it (one replica) and answers 200. A deployment without the field never goes to zero.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createFlotilla, type Flotilla } from '../../../src/index.ts';
import { isolatedDatabase } from '../../harness/isolation.ts';
import { waitFor } from '../../harness/wait.ts';

const repo = resolve(import.meta.dirname, '../../..');
const ECHO = `node ${join(repo, 'bin/flotilla.js')} echo-server --port {port}`;
const HEALTH = { interval_s: 0.2, timeout_s: 0.2, healthy_threshold: 1, startup_timeout_s: 30 };
const open: Flotilla[] = [];
afterEach(async () => {
  for (const f of open.splice(0)) await f.close();
});

describe('scale to zero in process', () => {
  it('drains an idle deployment to zero (RUNNING), and the first request activates one replica and answers 200', async (ctx) => {
    const { url } = await isolatedDatabase(ctx);
    const f = await createFlotilla({
      databaseUrl: url,
      dataDir: mkdtempSync(join(tmpdir(), 'flotilla-zero-')),
      modelRoots: [repo],
      runtime: { healthCheckIntervalS: 0.25, shards: 2, scaleToZeroIntervalS: 0.2 },
    });
    open.push(f);
    await f.deploy({
      name: 'lazy',
      command: ECHO,
      replicas: 1,
      scaling_policy: { min_replicas: 0, scale_to_zero_after_s: 1 },
      health_check: HEALTH,
    });
    await f.deploy({ name: 'busy', command: ECHO, replicas: 1, health_check: HEALTH });
    const zero = await waitFor(
      async () => {
        const v = await f.get('lazy');
        return v.state === 'RUNNING' && v.target_replicas === 0 && v.current_replicas === 0
          ? v
          : null;
      },
      { timeoutMs: 60_000, message: 'lazy at zero replicas' },
    );
    expect((zero as { scale_to_zero?: unknown }).scale_to_zero).toEqual({
      after_s: 1,
      at_zero: true,
      message: 'scaled to zero after 1 s idle; the next request activates it',
    });
    await waitFor(
      async () =>
        (await f.events('lazy', { limit: 1000 })).items.some(
          (e) => e.kind === 'deployment' && e.reason === 'scaled to zero after 1 s idle',
        ),
      { message: 'the scale to zero in the history' },
    );

    const answers = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const r = await fetch(`${f.proxyUrl}/lazy/v1/models`);
        return { status: r.status, replica: r.headers.get('x-flotilla-replica') };
      }),
    );
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    expect(new Set(answers.map((a) => a.replica)).size).toBe(1);
    expect((await f.get('lazy')).target_replicas).toBe(1);

    // Without scale_to_zero_after_s, idle time changes nothing.
    const busy = await f.get('busy');
    expect(busy.target_replicas).toBe(1);
    expect((busy as { scale_to_zero?: unknown }).scale_to_zero).toBeUndefined();
  });
});
