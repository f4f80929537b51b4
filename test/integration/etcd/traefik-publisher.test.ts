/**
 * The Traefik KV publisher against a real etcd: the exact layout, full replace per deployment,
 * and the stale-route-keys race (docs/routing-table-consistency.md): a deleted deployment's keys
 * are never re-created by a late publish, whatever the interleaving.
 */
import { Etcd3 } from 'etcd3';
import { afterEach, beforeEach, describe, expect, it, type TestContext } from 'vitest';
import type { DeploymentRoutes, RouteEntry, RoutingTable } from '../../../src/domain/routing.ts';
import { DEFAULT_ROUTING } from '../../../src/domain/routing.ts';
import { groupKeys } from '../../../src/etcd/traefik-layout.ts';
import {
  createTraefikPublisher,
  type TraefikPublisher,
} from '../../../src/etcd/traefik-publisher.ts';
import { isolatedPrefix, services } from '../../harness/isolation.ts';

let client: Etcd3;
let prefix: string;
let root: string;
let meta: string;
const publishers: TraefikPublisher[] = [];

beforeEach((ctx: TestContext) => {
  client = new Etcd3({ hosts: services().etcdEndpoints.split(',') });
  prefix = isolatedPrefix(ctx);
  root = `${prefix}traefik`;
  meta = `${prefix}meta/`;
});

afterEach(async () => {
  for (const p of publishers.splice(0)) await p.close();
  await client.delete().prefix(prefix);
  client.close();
});

function publisherOver(
  current: () => RoutingTable,
  extra: { fence?: { key: string; createRevision: string } } = {},
) {
  const p = createTraefikPublisher({ client, rootKey: root, metaPrefix: meta, current, ...extra });
  publishers.push(p);
  return p;
}

/** Every key under the Traefik root, relative to it, sorted. */
async function dump(): Promise<Record<string, string>> {
  const all = await client.getAll().prefix(`${root}/`).strings();
  return Object.fromEntries(
    Object.keys(all)
      .sort()
      .map((k) => [k.slice(root.length), all[k] as string]),
  );
}

function route(id: string, port: number, state: RouteEntry['state'], weight = 1): RouteEntry {
  return { routeId: id, replicaId: `rep-${id}`, url: `http://127.0.0.1:${port}`, state, weight };
}

function deployment(name: string, routes: RouteEntry[]): DeploymentRoutes {
  return { deploymentId: `id-${name}`, name, routing: DEFAULT_ROUTING, routes };
}

function table(
  version: number,
  deployments: DeploymentRoutes[],
  endpoints: RoutingTable['endpoints'] = [],
): RoutingTable {
  return { version, deployments, endpoints };
}

/** mulberry32: a small seeded PRNG, so a failing interleaving can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function seedFromEnv(): number {
  const s = Number(process.env.FLOTILLA_TEST_SEED);
  return Number.isFinite(s) && s > 0 ? s : Math.floor(Math.random() * 2 ** 31);
}

function interleavings(): number {
  return Math.max(1, Number(process.env.FLOTILLA_TRAEFIK_INTERLEAVINGS) || 3);
}

/** Waits a random, short while: a microtask, a macrotask or a few milliseconds. */
function jitter(rand: () => number): Promise<void> {
  const r = rand();
  if (r < 0.3) return Promise.resolve();
  if (r < 0.6) return new Promise((res) => setImmediate(res));
  return new Promise((res) => setTimeout(res, Math.floor(rand() * 6)));
}

/**
 * One seeded interleaving: two publishers over one etcd, each seeing a different moment of the
 * same 40-table history (deployments deleted and re-created at random), publishing stale tables
 * concurrently. Returns the keys left under the round's root and the newest table's keys.
 */
async function concurrentPublishes(
  seed: number,
  base: string,
): Promise<{ actual: Record<string, string>; expected: Record<string, string> }> {
  const rand = prng(seed);
  const r = `${base}traefik`;
  const m = `${base}meta/`;
  const tables: RoutingTable[] = [];
  for (let v = 1; v <= 40; v++) {
    const deployments: DeploymentRoutes[] = [];
    for (const name of ['a', 'b', 'c', 'd']) {
      if (rand() < 0.25) continue; // sometimes deleted
      const n = 1 + Math.floor(rand() * 3);
      deployments.push(
        deployment(
          name,
          Array.from({ length: n }, (_, j) =>
            route(`${name}${j}`, 9000 + v * 10 + j, rand() < 0.8 ? 'HEALTHY' : 'UNHEALTHY'),
          ),
        ),
      );
    }
    tables.push(
      table(v, deployments, [
        {
          name: 'split',
          backends: [
            { deployment: 'a', weight: 1 },
            { deployment: 'b', weight: 2 },
          ],
        },
      ]),
    );
  }
  const over = (current: () => RoutingTable) => {
    const p = createTraefikPublisher({ client, rootKey: r, metaPrefix: m, current });
    publishers.push(p);
    return p;
  };
  let cur = tables[0] as RoutingTable;
  const p1 = over(() => cur);
  // Two publishers over one etcd, each seeing a different moment of the same history.
  let other = tables[0] as RoutingTable;
  const p2 = over(() => other);
  const pending: Promise<void>[] = [];
  for (const t of tables) {
    cur = t;
    pending.push(p1.publish(tables[Math.floor(rand() * tables.length)] as RoutingTable));
    if (rand() < 0.5) {
      other = tables[Math.floor(rand() * t.version)] as RoutingTable;
      pending.push(p2.publish(other));
    }
    if (rand() < 0.5) await jitter(rand);
  }
  other = tables.at(-1) as RoutingTable;
  pending.push(p2.publish(other));
  await Promise.all(pending);
  const newest = tables.at(-1) as RoutingTable;
  const expected: Record<string, string> = {};
  for (const g of [
    ...['a', 'b', 'c', 'd'].map((name) => ({ kind: 'deployment' as const, name })),
    { kind: 'endpoint' as const, name: 'split' },
  ]) {
    for (const [k, v] of groupKeys(r, newest, g) ?? []) expected[k.slice(r.length)] = v;
  }
  const all = await client.getAll().prefix(`${r}/`).strings();
  const actual = Object.fromEntries(
    Object.keys(all)
      .sort()
      .map((k) => [k.slice(r.length), all[k] as string]),
  );
  return { actual, expected: Object.fromEntries(Object.entries(expected).sort()) };
}

describe('Traefik KV publisher', () => {
  it('writes two deployments and an endpoint in Traefik’s layout, exactly', async () => {
    const t = table(
      7,
      [
        deployment('alpha', [
          route('r2', 9002, 'HEALTHY'),
          route('r1', 9001, 'HEALTHY'),
          route('r3', 9003, 'UNHEALTHY'),
          route('r4', 9004, 'DEGRADED'),
          route('r0', 9000, 'PROVISIONING'),
        ]),
        // Nothing HEALTHY: the DEGRADED route serves (fail static), as in the proxy.
        deployment('beta', [route('r5', 9005, 'DEGRADED'), route('r6', 9006, 'UNHEALTHY')]),
      ],
      [
        {
          name: 'chat',
          backends: [
            { deployment: 'alpha', weight: 3 },
            { deployment: 'beta', weight: 1 },
            { deployment: 'gamma', weight: 2 }, // no such deployment: drops out of the split
          ],
        },
      ],
    );
    const p = publisherOver(() => t);
    await p.publish(t);
    expect(await dump()).toEqual({
      '/http/middlewares/flotilla_alpha/stripPrefix/prefixes/0': '/alpha',
      '/http/middlewares/flotilla_beta/stripPrefix/prefixes/0': '/beta',
      '/http/middlewares/flotilla_ep_chat/stripPrefix/prefixes/0': '/chat',
      '/http/routers/flotilla_alpha/middlewares/0': 'flotilla_alpha',
      '/http/routers/flotilla_alpha/rule': 'Path(`/alpha`) || PathPrefix(`/alpha/`)',
      '/http/routers/flotilla_alpha/service': 'flotilla_alpha',
      '/http/routers/flotilla_beta/middlewares/0': 'flotilla_beta',
      '/http/routers/flotilla_beta/rule': 'Path(`/beta`) || PathPrefix(`/beta/`)',
      '/http/routers/flotilla_beta/service': 'flotilla_beta',
      '/http/routers/flotilla_ep_chat/middlewares/0': 'flotilla_ep_chat',
      '/http/routers/flotilla_ep_chat/rule': 'Path(`/chat`) || PathPrefix(`/chat/`)',
      '/http/routers/flotilla_ep_chat/service': 'flotilla_ep_chat',
      '/http/services/flotilla_alpha/loadBalancer/servers/0/url': 'http://127.0.0.1:9001',
      '/http/services/flotilla_alpha/loadBalancer/servers/1/url': 'http://127.0.0.1:9002',
      '/http/services/flotilla_beta/loadBalancer/servers/0/url': 'http://127.0.0.1:9005',
      '/http/services/flotilla_ep_chat/weighted/services/0/name': 'flotilla_ep_chat_alpha',
      '/http/services/flotilla_ep_chat/weighted/services/0/weight': '3',
      '/http/services/flotilla_ep_chat/weighted/services/1/name': 'flotilla_ep_chat_beta',
      '/http/services/flotilla_ep_chat/weighted/services/1/weight': '1',
      '/http/services/flotilla_ep_chat_alpha/loadBalancer/servers/0/url': 'http://127.0.0.1:9001',
      '/http/services/flotilla_ep_chat_alpha/loadBalancer/servers/1/url': 'http://127.0.0.1:9002',
      '/http/services/flotilla_ep_chat_beta/loadBalancer/servers/0/url': 'http://127.0.0.1:9005',
    });
    // The version records live outside Traefik's root, which would reject unknown keys.
    expect(Object.keys(await client.getAll().prefix(meta).strings()).sort()).toEqual([
      `${meta}d/alpha`,
      `${meta}d/beta`,
      `${meta}e/chat`,
    ]);
  });

  it('a route leaving HEALTHY removes its server key', async () => {
    let cur = table(1, [
      deployment('alpha', [route('r1', 9001, 'HEALTHY'), route('r2', 9002, 'HEALTHY')]),
    ]);
    const p = publisherOver(() => cur);
    await p.publish(cur);
    expect(Object.keys(await dump()).filter((k) => k.includes('/servers/'))).toHaveLength(2);
    cur = table(2, [
      deployment('alpha', [route('r1', 9001, 'HEALTHY'), route('r2', 9002, 'UNHEALTHY')]),
    ]);
    await p.publish(cur);
    const keys = await dump();
    expect(Object.entries(keys).filter(([k]) => k.includes('/servers/'))).toEqual([
      ['/http/services/flotilla_alpha/loadBalancer/servers/0/url', 'http://127.0.0.1:9001'],
    ]);
    // The last HEALTHY route goes too: nothing servable, so the deployment has no keys at all.
    cur = table(3, [
      deployment('alpha', [route('r1', 9001, 'UNHEALTHY'), route('r2', 9002, 'UNHEALTHY')]),
    ]);
    await p.publish(cur);
    expect(await dump()).toEqual({});
  });

  it('publishing the same table twice leaves the same keys and writes nothing the second time', async () => {
    const t = table(
      5,
      [deployment('alpha', [route('r1', 9001, 'HEALTHY')])],
      [{ name: 'ep', backends: [{ deployment: 'alpha', weight: 0.5 }] }],
    );
    const p = publisherOver(() => t);
    await p.publish(t);
    const first = await dump();
    const rev1 = (await client.get(`${meta}d/alpha`).exec()).kvs[0]?.mod_revision;
    await p.publish(t);
    // A second publisher (a restarted coordinator) with the same table: nothing changes either.
    await publisherOver(() => t).publish(t);
    expect(await dump()).toEqual(first);
    expect((await client.get(`${meta}d/alpha`).exec()).kvs[0]?.mod_revision).toBe(rev1);
    expect(first['/http/services/flotilla_ep_ep/weighted/services/0/weight']).toBe('1');
  });

  it('deleting a deployment removes all its keys, and late publishes of older tables never re-create them', async () => {
    const seed = seedFromEnv();
    console.log(`[traefik-publisher] race seed ${seed} (FLOTILLA_TEST_SEED=${seed} replays it)`);
    const rand = prng(seed);
    const rounds = 60;
    let version = 1;
    let cur = table(version, [deployment('keep', [route('k1', 8000, 'HEALTHY')])]);
    const p = publisherOver(() => cur);
    // A second coordinator process that lags: its current() is whatever stale table it saw.
    let laggard: RoutingTable = cur;
    const lagging = publisherOver(() => laggard);
    for (let i = 0; i < rounds; i++) {
      const name = `d${i}`;
      const withIt = table(++version, [
        ...cur.deployments,
        deployment(name, [
          route(`${name}a`, 9000 + i, 'HEALTHY'),
          route(`${name}b`, 9500 + i, 'DEGRADED'),
        ]),
      ]);
      cur = withIt;
      const pending: Promise<void>[] = [p.publish(withIt)];
      if (rand() < 0.5) await jitter(rand);
      // A health update for it arrives (route b turns HEALTHY), then the deletion; their
      // publishes run in either order, each maybe delayed.
      const updated = table(++version, [
        ...cur.deployments.filter((d) => d.name !== name),
        deployment(name, [
          route(`${name}a`, 9000 + i, 'HEALTHY'),
          route(`${name}b`, 9500 + i, 'HEALTHY'),
        ]),
      ]);
      const deleted = table(
        ++version,
        cur.deployments.filter((d) => d.name !== name),
      );
      cur = updated;
      if (rand() < 0.5) pending.push(p.publish(updated));
      if (rand() < 0.7) await jitter(rand);
      cur = deleted;
      for (const t of rand() < 0.5 ? [updated, deleted] : [deleted, updated]) {
        if (rand() < 0.7) await jitter(rand);
        pending.push(p.publish(t));
      }
      // Late publishes of the older tables, from this process and from the laggard.
      for (let k = 0; k < 3; k++) {
        if (rand() < 0.5) await jitter(rand);
        const stale = rand() < 0.5 ? withIt : updated;
        pending.push(p.publish(stale));
        laggard = stale;
        pending.push(lagging.publish(stale).catch(() => {}));
      }
      await Promise.all(pending);
      // Deleted for good: no key mentions it, whatever ran last.
      const keys = await dump();
      expect(
        Object.keys(keys).filter((k) => k.includes(`flotilla_${name}/`)),
        `round ${i}, seed ${seed}`,
      ).toEqual([]);
    }
    // The deployment that stayed is untouched.
    expect((await dump())['/http/services/flotilla_keep/loadBalancer/servers/0/url']).toBe(
      'http://127.0.0.1:8000',
    );
  });

  it(
    'concurrent publishes end with the newest table’s keys',
    async () => {
      // FLOTILLA_TRAEFIK_INTERLEAVINGS=1000 replays many seeded interleavings in one run (each
      // under its own key prefix); the default is a few, so `npm test` stays short.
      const rounds = interleavings();
      const first = seedFromEnv();
      console.log(
        `[traefik-publisher] concurrency seeds ${first}..${first + rounds - 1} (FLOTILLA_TEST_SEED replays)`,
      );
      const failures: string[] = [];
      for (let i = 0; i < rounds; i++) {
        const seed = first + i;
        const { actual, expected } = await concurrentPublishes(seed, `${prefix}r${i}/`);
        if (JSON.stringify(actual) !== JSON.stringify(expected)) {
          failures.push(
            `seed ${seed}: ${Object.keys(actual).length} keys, ${Object.keys(expected).length} expected; extra: ${Object.keys(
              actual,
            )
              .filter((k) => !(k in expected))
              .join(', ')}; missing: ${Object.keys(expected)
              .filter((k) => !(k in actual))
              .join(', ')}`,
          );
        }
        for (const p of publishers.splice(0)) await p.close();
        await client.delete().prefix(`${prefix}r${i}/`);
      }
      console.log(`[traefik-publisher] ${rounds} interleavings, ${failures.length} failed`);
      expect(failures).toEqual([]);
    },
    60_000 + 2_000 * interleavings(),
  );

  it('a publisher whose leader key is gone writes nothing', async () => {
    const lease = client.lease(5);
    const fenceKey = `${prefix}election/leader`;
    await lease.put(fenceKey).value('me');
    const rev = (await client.get(fenceKey).exec()).kvs[0]?.create_revision as string;
    let cur = table(1, [deployment('alpha', [route('r1', 9001, 'HEALTHY')])]);
    const p = publisherOver(() => cur, { fence: { key: fenceKey, createRevision: rev } });
    await p.publish(cur);
    expect(Object.keys(await dump())).toHaveLength(5);
    await lease.revoke();
    cur = table(2, []);
    await expect(p.publish(cur)).rejects.toThrow(/not the leader/);
    expect(Object.keys(await dump())).toHaveLength(5);
  });

  it('keys left by an earlier process for a deployment that is gone are deleted on the first publish', async () => {
    const old = table(1, [
      deployment('ghost', [route('g1', 9001, 'HEALTHY')]),
      deployment('alive', [route('a1', 9002, 'HEALTHY')]),
    ]);
    const p1 = publisherOver(() => old);
    await p1.publish(old);
    await p1.close();
    const now = table(2, [deployment('alive', [route('a1', 9002, 'HEALTHY')])]);
    const p2 = publisherOver(() => now);
    await p2.publish(now);
    expect(Object.keys(await dump()).some((k) => k.includes('ghost'))).toBe(false);
    expect(Object.keys(await dump()).some((k) => k.includes('alive'))).toBe(true);
  });
});
