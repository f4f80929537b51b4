/**
 * The RoutingTableSource contract, run against every implementation: the static source (tables
 * handed over whole), the in-process source as `createFlotilla` feeds it (tables from the
 * runtime's per-deployment publisher, each with its change), and Redis (fed by full tables and
 * by per-deployment changes). A RoutingState follows each source, as the proxy does.
 */
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, type TestContext } from 'vitest';
import {
  DEFAULT_ROUTING,
  type DeploymentRoutes,
  type RoutingTable,
} from '../../../src/domain/routing.ts';
import { OutlierDetector } from '../../../src/proxy/outlier-detector.ts';
import { createProxyMetrics } from '../../../src/proxy/proxy-metrics.ts';
import { RoutingState, type Upstream } from '../../../src/proxy/routing-state.ts';
import {
  createRedisTableSource,
  createStaticTableSource,
  publishRoutingTable,
  type RoutingTableSource,
} from '../../../src/proxy/routing-table-source.ts';
import { RoutingPublisher } from '../../../src/runtime/routing-publisher.ts';
import { isolatedPrefix, services } from '../../harness/isolation.ts';
import { waitFor } from '../../harness/wait.ts';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of closers.splice(0).reverse()) await f();
});

/** Drives one implementation: a model of the table, published its way. */
interface Driver {
  /** A new source following what was published so far. */
  open(): Promise<RoutingTableSource>;
  /** Upserts and removes deployments in one publish; returns the version. */
  change(upsert: DeploymentRoutes[], remove?: string[]): Promise<number>;
  /** Publishes a table as given (e.g. an older one). */
  publishRaw(t: RoutingTable): Promise<void>;
  /** The deployments the model holds, by id. */
  model: Map<string, DeploymentRoutes>;
  /** Redis only: publishes while the follower's subscription is down; returns the version. */
  writeSilently?(): Promise<number>;
}

function entry(
  id: string,
  routes = 1,
  state: 'HEALTHY' | 'UNHEALTHY' = 'HEALTHY',
): DeploymentRoutes {
  return {
    deploymentId: id,
    name: `name-${id}`,
    routing: DEFAULT_ROUTING,
    routes: Array.from({ length: routes }, (_, i) => ({
      routeId: `${id}-r${i}`,
      replicaId: `${id}-rep${i}`,
      url: `http://127.0.0.1:${20000 + i}`,
      state,
      weight: 1,
    })),
  };
}

/** Tables built per deployment by the runtime's publisher; each carries its change. */
function perDeploymentTables(model: Map<string, DeploymentRoutes>, start: number) {
  let clock = start;
  const pub = new RoutingPublisher({
    build: (id) => {
      const d = model.get(id);
      return d ? { entry: d, targets: [] } : null;
    },
    now: () => clock++,
    warn: () => {},
    defer: () => {},
  });
  return (ids: string[]) => {
    for (const id of ids) pub.markDirty(id);
    return pub.publishNow();
  };
}

const drivers: Record<string, (ctx: TestContext) => Promise<Driver>> = {
  async static() {
    const model = new Map<string, DeploymentRoutes>();
    const src = createStaticTableSource();
    closers.push(() => src.close());
    let version = 0;
    return {
      model,
      open: async () => src,
      async change(upsert, remove = []) {
        for (const d of upsert) model.set(d.deploymentId, d);
        for (const id of remove) model.delete(id);
        src.set({ version: ++version, deployments: [...model.values()], endpoints: [] });
        return version;
      },
      async publishRaw(t) {
        src.set(t);
      },
    };
  },

  async 'in-process'() {
    const model = new Map<string, DeploymentRoutes>();
    const src = createStaticTableSource();
    closers.push(() => src.close());
    const publish = perDeploymentTables(model, 1);
    return {
      model,
      open: async () => src,
      async change(upsert, remove = []) {
        for (const d of upsert) model.set(d.deploymentId, d);
        for (const id of remove) model.delete(id);
        const t = publish([...upsert.map((d) => d.deploymentId), ...remove]);
        src.set(t);
        return t.version;
      },
      async publishRaw(t) {
        src.set(t);
      },
    };
  },

  async 'redis (per-deployment changes)'(ctx) {
    return redisDriver(ctx, true);
  },

  async 'redis (full tables)'(ctx) {
    return redisDriver(ctx, false);
  },
};

async function redisDriver(ctx: TestContext, perDeployment: boolean): Promise<Driver> {
  const prefix = isolatedPrefix(ctx);
  const redis = new Redis(services().redisUrl);
  closers.push(() => redis.quit());
  const model = new Map<string, DeploymentRoutes>();
  const publish = perDeploymentTables(model, 1);
  let version = 0;
  const change = async (upsert: DeploymentRoutes[], remove: string[] = []) => {
    for (const d of upsert) model.set(d.deploymentId, d);
    for (const id of remove) model.delete(id);
    const t = perDeployment
      ? publish([...upsert.map((d) => d.deploymentId), ...remove])
      : { version: ++version, deployments: [...model.values()], endpoints: [] };
    version = t.version;
    expect(await publishRoutingTable(redis, prefix, t)).toBe(true);
    return t.version;
  };
  return {
    model,
    async open() {
      const s = await createRedisTableSource({
        url: services().redisUrl,
        keyPrefix: prefix,
        resyncIntervalMs: 200,
      });
      closers.push(() => s.close());
      return s;
    },
    change,
    async publishRaw(t) {
      await publishRoutingTable(redis, prefix, t);
    },
    async writeSilently() {
      // The follower's subscriber connection drops; what is published meanwhile is not
      // announced to it (pub/sub is at most once).
      const list = String(await redis.client('LIST'));
      const line = list.split('\n').find((l) => l.includes(`name=flotilla-table-sub:${prefix}`));
      const id = /id=(\d+)/.exec(line ?? '')?.[1];
      if (id) await redis.client('KILL', 'ID', id);
      return change([entry('silent')]);
    },
  };
}

function follower(source: RoutingTableSource) {
  const metrics = createProxyMetrics(() => []);
  const outliers = new OutlierDetector<Upstream>(undefined, {
    peers: (u) => u.deployment.targets,
    ejected: () => {},
    returned: () => {},
  });
  const state = new RoutingState({ random: Math.random, metrics, outliers, warn: () => {} });
  const seen: number[] = [];
  state.apply(source.current());
  const unsubscribe = source.subscribe((t) => {
    seen.push(t.version);
    state.apply(t);
  });
  return { state, seen, unsubscribe };
}

const byId = (ds: readonly DeploymentRoutes[]) =>
  [...ds].sort((a, b) => (a.deploymentId < b.deploymentId ? -1 : 1));

for (const [name, make] of Object.entries(drivers)) {
  describe(`routing table source conformance: ${name}`, () => {
    it('starts from an empty version-0 table, then holds what was published', async (ctx) => {
      const d = await make(ctx);
      const source = await d.open();
      expect(source.current().version).toBe(0);
      expect(source.current().deployments).toEqual([]);
      const v = await d.change([entry('a'), entry('b')]);
      await waitFor(() => source.current().version === v, { message: 'table arrives' });
      expect(byId(source.current().deployments)).toEqual(byId([...d.model.values()]));
      const later = await d.open();
      expect(byId(later.current().deployments)).toEqual(byId([...d.model.values()]));
    });

    it('delivers every newer table in order, never an older one', async (ctx) => {
      const d = await make(ctx);
      const source = await d.open();
      const { seen } = follower(source);
      let last = 0;
      for (let i = 0; i < 10; i++) last = await d.change([entry(`d${i % 3}`, 1 + (i % 2))]);
      await waitFor(() => source.current().version === last, { message: 'last table arrives' });
      expect(seen.at(-1)).toBe(last);
      expect([...seen].sort((a, b) => a - b)).toEqual(seen);
      await d.publishRaw({ version: last - 1, deployments: [], endpoints: [] });
      await new Promise((r) => setImmediate(r));
      expect(source.current().version).toBe(last);
      expect(byId(source.current().deployments)).toEqual(byId([...d.model.values()]));
    });

    it('applies a change to one deployment and a removal, leaving the others as they were', async (ctx) => {
      const d = await make(ctx);
      const source = await d.open();
      const { state } = follower(source);
      const v1 = await d.change([entry('a', 2), entry('b'), entry('c')]);
      await waitFor(() => state.version === v1, { message: 'first table applied' });
      const c = state.deployment('name-c');
      const v2 = await d.change([entry('a', 1, 'UNHEALTHY')], ['b']);
      await waitFor(() => state.version === v2, { message: 'change applied' });
      expect(state.deployment('name-a')?.targets).toEqual([]);
      expect(state.deployment('name-a')?.routes).toHaveLength(1);
      expect(state.deployment('name-b')).toBeUndefined();
      expect(state.deployment('name-c')).toBe(c);
      expect(byId(source.current().deployments)).toEqual(byId([...d.model.values()]));
    });

    it('stops delivering once closed', async (ctx) => {
      const d = await make(ctx);
      const source = await d.open();
      const seen: number[] = [];
      source.subscribe((t) => seen.push(t.version));
      const v = await d.change([entry('a')]);
      await waitFor(() => seen.includes(v), { message: 'delivered while open' });
      await source.close();
      await d.change([entry('b')]);
      await new Promise((r) => setTimeout(r, 300));
      expect(seen).toEqual([v]);
    });

    if (name.startsWith('redis')) {
      it('catches up on a table whose notification was missed (resync)', async (ctx) => {
        const d = await make(ctx);
        const source = await d.open();
        const { state } = follower(source);
        const v1 = await d.change([entry('a')]);
        await waitFor(() => state.version === v1, { message: 'first table applied' });
        const v2 = await d.writeSilently!();
        await waitFor(() => source.current().version === v2, {
          message: 'resynced',
          timeoutMs: 5_000,
        });
        expect(state.deployment('name-silent')).toBeDefined();
        // And a per-deployment change after the resync applies on top of it.
        const v3 = await d.change([entry('b')]);
        await waitFor(() => state.version === v3, { message: 'next change applied' });
        expect(byId(source.current().deployments)).toEqual(byId([...d.model.values()]));
      });
    }
  });
}
