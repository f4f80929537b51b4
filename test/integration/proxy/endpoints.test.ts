/**
 * Endpoints: traffic split by weight across deployments (canary, blue-green), with backends
 * that cannot serve dropping out of the split (docs/health-and-degradation.md).
 */
import { describe, expect, it } from 'vitest';
import { createProxy } from '../../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../../src/proxy/routing-table-source.ts';
import {
  client,
  countBy,
  deployment,
  proxyTestFixture,
  type Replica,
  runConcurrent,
  startReplica,
  table,
  waitFor,
} from './helpers.ts';

const { proxies, clients } = proxyTestFixture();

async function setup(...args: Parameters<typeof table>) {
  const source = createStaticTableSource(table(...args));
  const proxy = await createProxy({ source });
  proxies.push(proxy);
  const c = client();
  clients.push(c);
  return { source, proxy, c };
}

const blueGreen = (blue: Replica[], green: Replica[]) => [
  deployment({
    name: 'blue',
    admission: { max_concurrent_requests: 32 },
    replicas: blue.map((replica) => ({ replica })),
  }),
  deployment({
    name: 'green',
    admission: { max_concurrent_requests: 32 },
    replicas: green.map((replica) => ({ replica })),
  }),
];

describe('endpoints', () => {
  it('splits traffic by backend weight (canary 90/10)', async () => {
    const b = await startReplica('blue-1');
    const g = await startReplica('green-1');
    const { proxy, c } = await setup(blueGreen([b], [g]), [
      {
        name: 'chat',
        backends: [
          { deployment: 'blue', weight: 90 },
          { deployment: 'green', weight: 10 },
        ],
      },
    ]);
    const seen = await runConcurrent(1000, 8, async () => {
      const r = await c.get(`${proxy.url}/chat/v1/models`);
      expect(r.status).toBe(200);
      return String(r.headers['x-flotilla-replica']);
    });
    const counts = countBy(seen);
    console.log(`endpoint split 90/10: ${JSON.stringify(counts)}`);
    expect(Math.abs(counts['blue-1']! - 900)).toBeLessThanOrEqual(45);
    expect(Math.abs(counts['green-1']! - 100)).toBeLessThanOrEqual(5);
  });

  it('keeps answering without an error while one of two deployments is deleted', async () => {
    const blue = [
      await startReplica('blue-1', { DELAY_MS: 3 }),
      await startReplica('blue-2', { DELAY_MS: 3 }),
    ];
    const green = [await startReplica('green-1', { DELAY_MS: 3 })];
    const endpoints = [
      {
        name: 'chat',
        backends: [
          { deployment: 'blue', weight: 1 },
          { deployment: 'green', weight: 1 },
        ],
      },
    ];
    const { source, proxy, c } = await setup(blueGreen(blue, green), endpoints);
    const results: { status: number; replica: string; at: number }[] = [];
    let stop = false;
    const loops = Array.from({ length: 8 }, async () => {
      while (!stop) {
        const r = await c.get(`${proxy.url}/chat/x`);
        results.push({
          status: r.status,
          replica: String(r.headers['x-flotilla-replica']),
          at: performance.now(),
        });
      }
    });
    await waitFor(() => results.length >= 200, 'traffic on both');
    const deletedAt = performance.now();
    // green is deleted: it leaves the table (its replica keeps running, as while draining).
    source.set(table(blueGreen(blue, []).slice(0, 1), endpoints));
    await waitFor(
      () => results.filter((r) => r.at > deletedAt).length >= 300,
      'traffic after delete',
    );
    stop = true;
    await Promise.all(loops);
    const after = results.filter((r) => r.at > deletedAt + 50);
    console.log(
      `${results.length} requests; statuses ${JSON.stringify(countBy(results.map((r) => String(r.status))))}; before ${JSON.stringify(countBy(results.filter((r) => r.at < deletedAt).map((r) => r.replica)))}; after ${JSON.stringify(countBy(after.map((r) => r.replica)))}`,
    );
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(results.some((r) => r.at < deletedAt && r.replica === 'green-1')).toBe(true);
    expect(after.every((r) => r.replica.startsWith('blue-'))).toBe(true);
  });

  it('drops a backend with no HEALTHY or DEGRADED route and gives its share to the others', async () => {
    const b = await startReplica('blue-1');
    const g = await startReplica('green-1');
    const { proxy, c } = await setup(
      [
        deployment({ name: 'blue', replicas: [{ replica: b, state: 'UNHEALTHY' }] }),
        deployment({ name: 'green', replicas: [{ replica: g }] }),
      ],
      [
        {
          name: 'chat',
          backends: [
            { deployment: 'blue', weight: 9 },
            { deployment: 'green', weight: 1 },
            { deployment: 'never-deployed', weight: 5 },
          ],
        },
      ],
    );
    for (let i = 0; i < 20; i++) {
      const r = await c.get(`${proxy.url}/chat/x`);
      expect(r.status).toBe(200);
      expect(r.headers['x-flotilla-replica']).toBe('green-1');
    }
  });

  it('answers 503 no_backends for an endpoint without backends, and no_healthy_replicas when none can serve', async () => {
    const b = await startReplica('blue-1');
    const { proxy, c } = await setup(
      [deployment({ name: 'blue', replicas: [{ replica: b, state: 'TERMINATING' }] })],
      [
        { name: 'empty', backends: [] },
        { name: 'down', backends: [{ deployment: 'blue', weight: 1 }] },
      ],
    );
    const empty = await c.get(`${proxy.url}/empty/x`);
    expect(empty.status).toBe(503);
    expect(JSON.parse(empty.text).error.code).toBe('no_backends');
    expect(empty.headers['retry-after']).toBeDefined();
    const down = await c.get(`${proxy.url}/down/x`);
    expect(down.status).toBe(503);
    expect(JSON.parse(down.text).error.code).toBe('no_healthy_replicas');
  });

  it('moves queued requests to another backend when their deployment loses every replica', async () => {
    const b = await startReplica('blue-1');
    const g = await startReplica('green-1');
    const endpoints = [
      {
        name: 'chat',
        backends: [
          { deployment: 'blue', weight: 1 },
          { deployment: 'green', weight: 0 },
        ],
      },
    ];
    const d = (blueState: 'HEALTHY' | 'UNHEALTHY') => [
      deployment({
        name: 'blue',
        admission: { max_concurrent_requests: 1 },
        replicas: [{ replica: b, state: blueState }],
      }),
      deployment({ name: 'green', replicas: [{ replica: g }] }),
    ];
    const { source, proxy, c } = await setup(d('HEALTHY'), endpoints);
    const blocker = c.get(`${proxy.url}/chat/x?delay=500`);
    await waitFor(() => proxy.status('blue').inflight === 1, 'blue busy');
    const queued = c.get(`${proxy.url}/chat/x`);
    await waitFor(() => proxy.status('blue').queued === 1, 'queued on blue');
    source.set(table(d('UNHEALTHY'), endpoints));
    const moved = await queued;
    expect(moved.status).toBe(200);
    expect(moved.headers['x-flotilla-replica']).toBe('green-1');
    expect((await blocker).status).toBe(200);
  });
});
