import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createFlotilla, type Flotilla } from '../../../src/index.ts';
import { isolatedDatabase, isolatedPrefix, services } from '../../harness/isolation.ts';
import { waitFor } from '../../harness/wait.ts';

const repo = resolve(import.meta.dirname, '../../..');
let flotilla: Flotilla | null = null;
afterEach(async () => {
  await flotilla?.close();
  flotilla = null;
});

describe('per-revision route weight', () => {
  it('a deployment requested with weight 3 puts its replicas in the routing table with weight 3', async (ctx) => {
    const { url } = await isolatedDatabase(ctx);
    flotilla = await createFlotilla({
      databaseUrl: url,
      redisUrl: services().redisUrl,
      redisKeyPrefix: isolatedPrefix(ctx),
      dataDir: mkdtempSync(join(tmpdir(), 'flotilla-weight-')),
      modelRoots: [repo],
      runtime: { healthCheckIntervalS: 1, shards: 2 },
    });
    const f = flotilla;
    await f.deploy({
      name: 'weighted',
      model_path: 'examples/echo',
      replicas: 2,
      weight: 3,
      routing: { strategy: 'weighted' },
    });
    const routes = await waitFor(
      () => {
        const rs = f.routingTable().deployments.find((d) => d.name === 'weighted')?.routes ?? [];
        return rs.filter((r) => r.state === 'HEALTHY').length === 2 ? rs : null;
      },
      { timeoutMs: 30_000, message: 'weighted did not get 2 HEALTHY routes' },
    );
    expect(routes.map((r) => r.weight)).toEqual([3, 3]);
    const view = await f.get('weighted');
    expect(view.session).toMatchObject({ weight: 3 });
    expect(view.revision).toMatchObject({ weight: 3 });
  }, 60_000);
});
