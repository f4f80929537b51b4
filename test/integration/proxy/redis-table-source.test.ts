/**
 * Routing tables through Redis: proxies in other processes follow the coordinator's table,
 * and a route that leaves HEALTHY leaves every proxy's rotation within one second.
 */
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createProxy, type FlotillaProxy } from '../../../src/proxy/proxy-server.ts';
import {
  createRedisTableSource,
  publishRoutingTable,
  type RoutingTableSource,
  routingTableKey,
} from '../../../src/proxy/routing-table-source.ts';
import { isolatedPrefix, services } from '../../harness/isolation.ts';
import {
  client,
  countBy,
  deployment,
  proxyTestFixture,
  type Replica,
  startReplica,
  table,
  waitFor,
} from './helpers.ts';

const { closers } = proxyTestFixture();

function redis(): Redis {
  const r = new Redis(services().redisUrl);
  closers.push(() => r.quit());
  return r;
}

async function followingProxy(
  prefix: string,
): Promise<{ proxy: FlotillaProxy; source: RoutingTableSource }> {
  const source = await createRedisTableSource({ url: services().redisUrl, keyPrefix: prefix });
  closers.push(() => source.close());
  const proxy = await createProxy({ source });
  closers.push(() => proxy.close());
  return { proxy, source };
}

const twoReplicas = (a: Replica, b: Replica, bState: 'HEALTHY' | 'UNHEALTHY') =>
  table([deployment({ name: 'm', replicas: [{ replica: a }, { replica: b, state: bState }] })]);

describe('redis routing table source', () => {
  it('takes a route out of every proxy within one second of it leaving HEALTHY', async (ctx) => {
    const prefix = isolatedPrefix(ctx);
    const pub = redis();
    const [a, b] = [await startReplica('a'), await startReplica('b')];
    await publishRoutingTable(pub, prefix, twoReplicas(a, b, 'HEALTHY'));
    const proxies = [
      await followingProxy(prefix),
      await followingProxy(prefix),
      await followingProxy(prefix),
    ];
    const c = client();
    closers.push(() => c.close());
    for (const { proxy } of proxies) {
      const seen = [];
      for (let i = 0; i < 4; i++)
        seen.push(String((await c.get(`${proxy.url}/m/x`)).headers['x-flotilla-replica']));
      expect(countBy(seen)).toEqual({ a: 2, b: 2 });
    }

    const t0 = performance.now();
    await publishRoutingTable(pub, prefix, twoReplicas(a, b, 'UNHEALTHY'));
    const converged = await Promise.all(
      proxies.map(async ({ proxy }) => {
        await waitFor(() => proxy.status('m').capacity === 3, 'route removed', 5_000, 1);
        return performance.now() - t0;
      }),
    );
    console.log(
      `route left the proxies' tables after ${converged.map((ms) => ms.toFixed(1)).join(', ')} ms`,
    );
    for (const ms of converged) expect(ms).toBeLessThan(1_000);
    const bBefore = (await b.stats()).requests;
    for (const { proxy } of proxies) {
      for (let i = 0; i < 20; i++) {
        expect((await c.get(`${proxy.url}/m/x`)).headers['x-flotilla-replica']).toBe('a');
      }
    }
    expect((await b.stats()).requests).toBe(bBefore);
  });

  it('loads the stored table at start, and an empty one when none is stored', async (ctx) => {
    const prefix = isolatedPrefix(ctx);
    const empty = await createRedisTableSource({ url: services().redisUrl, keyPrefix: prefix });
    closers.push(() => empty.close());
    expect(empty.current()).toEqual({ version: 0, deployments: [], endpoints: [] });
    const a = await startReplica('a');
    const t = table([deployment({ name: 'm', replicas: [{ replica: a }] })]);
    await publishRoutingTable(redis(), prefix, t);
    const later = await createRedisTableSource({ url: services().redisUrl, keyPrefix: prefix });
    closers.push(() => later.close());
    expect(later.current()).toEqual(t);
    await waitFor(() => empty.current().version === t.version, 'first source follows');
  });

  it('never lets the stored table go back to an older version', async (ctx) => {
    const prefix = isolatedPrefix(ctx);
    const pub = redis();
    const newer = { version: 10, deployments: [], endpoints: [] };
    const older = { version: 9, deployments: [], endpoints: [] };
    expect(await publishRoutingTable(pub, prefix, newer)).toBe(true);
    expect(await publishRoutingTable(pub, prefix, older)).toBe(false);
    expect(await pub.hget(routingTableKey(prefix), 'version')).toBe('10');
    expect(await publishRoutingTable(pub, prefix, newer)).toBe(true);
  });

  it('keeps the admission settings a deployment carries', async (ctx) => {
    const prefix = isolatedPrefix(ctx);
    const a = await startReplica('a');
    const t = table([
      deployment({
        name: 'm',
        admission: { max_concurrent_requests: 7 },
        replicas: [{ replica: a }],
      }),
    ]);
    await publishRoutingTable(redis(), prefix, t);
    const { proxy } = await followingProxy(prefix);
    expect(proxy.status('m').capacity).toBe(7);
  });

  it('catches up after its subscriber connection drops (a notification missed meanwhile)', async (ctx) => {
    const prefix = isolatedPrefix(ctx);
    const pub = redis();
    const [a, b] = [await startReplica('a'), await startReplica('b')];
    await publishRoutingTable(pub, prefix, twoReplicas(a, b, 'HEALTHY'));
    const { proxy } = await followingProxy(prefix);
    expect(proxy.status('m').capacity).toBe(6);
    const list = (await pub.client('LIST')) as string;
    const line = list.split('\n').find((l) => l.includes(`name=flotilla-table-sub:${prefix}`));
    expect(line).toBeDefined();
    const id = /id=(\d+)/.exec(line!)![1]!;
    await pub.client('KILL', 'ID', id);
    // Published while the subscriber is down or resubscribing: the message may be lost.
    await publishRoutingTable(pub, prefix, twoReplicas(a, b, 'UNHEALTHY'));
    const t0 = performance.now();
    await waitFor(() => proxy.status('m').capacity === 3, 'caught up', 5_000);
    console.log(`caught up ${(performance.now() - t0).toFixed(0)} ms after the publish`);
  });
});
