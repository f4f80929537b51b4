/**
 * Stale and crossed routes (issue 15, scenario 5; Backend.AI #10656 / BA-5499 class), seeded:
 * health flips x scale-ins x deletions x coordinator restarts, with a small pool of ports
 * reused between deployments, published to both sinks other processes read (etcd in
 * Traefik's layout, Redis for `--role proxy`). After quiescence:
 * - etcd holds exactly the final table's keys (0 stale keys, 0 missing);
 * - no etcd server URL under deployment A's service and no Redis entry of A points at a replica
 *   of B (identity checked through the replica ids the records carry, not just host:port).
 * A restarted coordinator is a new leader (a new fence) with new publishers; the old one makes
 * one late publish of its stale table, as a paused process would.
 *
 * `npm test` runs a modest size; FLOTILLA_ROUTING_STRESS_RUNS / _STEPS make it longer, and
 * FLOTILLA_TEST_SEED replays a run.
 */
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it, type TestContext } from 'vitest';
import type { DeploymentRoutes, RouteState, RoutingTable } from '../../../src/domain/routing.ts';
import { DEFAULT_ROUTING } from '../../../src/domain/routing.ts';
import { groupKeys } from '../../../src/etcd/traefik-layout.ts';
import {
  createTraefikPublisher,
  type TraefikPublisher,
} from '../../../src/etcd/traefik-publisher.ts';
import {
  parseStoredTable,
  publishRoutingTable,
  routingTableKey,
} from '../../../src/proxy/routing-table-source.ts';
import { isolatedPrefix, services } from '../../harness/isolation.ts';

const RUNS = Math.max(1, Number(process.env.FLOTILLA_ROUTING_STRESS_RUNS) || 2);
const STEPS = Math.max(10, Number(process.env.FLOTILLA_ROUTING_STRESS_STEPS) || 120);
const NAMES = ['a', 'b', 'c', 'd', 'e'];
const PORTS = Array.from({ length: 10 }, (_, i) => 9200 + i);
const STATES: RouteState[] = ['HEALTHY', 'HEALTHY', 'UNHEALTHY', 'DEGRADED'];

let client: Etcd3;
let prefix: string;
const toClose: Array<() => Promise<unknown>> = [];

beforeEach((ctx: TestContext) => {
  client = new Etcd3({ hosts: services().etcdEndpoints.split(',') });
  prefix = isolatedPrefix(ctx);
});

afterEach(async () => {
  for (const c of toClose.splice(0).reverse()) await c().catch(() => {});
  await client.delete().prefix(prefix);
  client.close();
});

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

interface Replica {
  port: number;
  state: RouteState;
}
interface Deployment {
  id: string;
  replicas: Map<string, Replica>;
}

/** The fleet as the coordinator sees it: ports come from a small shared pool. */
class Model {
  readonly deployments = new Map<string, Deployment>();
  private n = 0;
  constructor(private readonly rand: () => number) {}

  private pick<T>(xs: T[]): T | undefined {
    return xs[Math.floor(this.rand() * xs.length)];
  }
  private freePorts(): number[] {
    const used = new Set<number>();
    for (const d of this.deployments.values())
      for (const r of d.replicas.values()) used.add(r.port);
    return PORTS.filter((p) => !used.has(p));
  }
  private addReplica(d: Deployment): void {
    const port = this.pick(this.freePorts());
    if (port === undefined) return;
    d.replicas.set(`${d.id}-r${++this.n}`, { port, state: 'DEGRADED' });
  }

  /** One seeded event; returns its name. */
  step(): string {
    const r = this.rand();
    const names = [...this.deployments.keys()];
    const name = this.pick(names);
    const d = name ? this.deployments.get(name) : undefined;
    if (r < 0.15 || !d) {
      const free = NAMES.filter((x) => !this.deployments.has(x));
      const fresh = this.pick(free);
      if (!fresh) return 'none';
      const nd: Deployment = { id: `${fresh}-${++this.n}`, replicas: new Map() };
      this.deployments.set(fresh, nd);
      for (let i = 0; i < 1 + Math.floor(this.rand() * 2); i++) this.addReplica(nd);
      return 'create';
    }
    if (r < 0.25 && name) {
      this.deployments.delete(name);
      return 'delete';
    }
    const ids = [...d.replicas.keys()];
    if (r < 0.45) {
      const id = this.pick(ids);
      if (id) d.replicas.delete(id);
      return 'scale-in';
    }
    if (r < 0.6) {
      this.addReplica(d);
      return 'scale-out';
    }
    const id = this.pick(ids);
    const rep = id ? d.replicas.get(id) : undefined;
    if (rep) rep.state = this.pick(STATES) as RouteState;
    return 'health-flip';
  }

  table(version: number): RoutingTable {
    const deployments: DeploymentRoutes[] = [];
    for (const [name, d] of this.deployments) {
      deployments.push({
        deploymentId: d.id,
        name,
        routing: DEFAULT_ROUTING,
        routes: [...d.replicas].map(([rid, r]) => ({
          routeId: `route-${rid}`,
          replicaId: rid,
          url: `http://127.0.0.1:${r.port}`,
          state: r.state,
          weight: 1,
        })),
      });
    }
    return { version, deployments, endpoints: [] };
  }
}

interface Coordinator {
  etcd: TraefikPublisher;
  redis: Redis;
  current: RoutingTable;
  leaseRevoke: () => Promise<void>;
}

interface Figures {
  events: Record<string, number>;
  staleEtcdKeys: number;
  missingEtcdKeys: number;
  crossedEtcd: number;
  staleRedisEntries: number;
  crossedRedis: number;
  lateWritesAccepted: number;
}

async function oneRun(seed: number, base: string): Promise<Figures> {
  const rand = prng(seed);
  const model = new Model(rand);
  const root = `${base}traefik`;
  const meta = `${base}meta/`;
  const redisPrefix = `${base}redis:`;
  const electionKey = `${base}election/leader`;
  let version = 0;
  const figures: Figures = {
    events: {},
    staleEtcdKeys: 0,
    missingEtcdKeys: 0,
    crossedEtcd: 0,
    staleRedisEntries: 0,
    crossedRedis: 0,
    lateWritesAccepted: 0,
  };
  const pending: Promise<unknown>[] = [];

  async function elect(): Promise<Coordinator> {
    const lease = client.lease(30);
    await lease.put(electionKey).value('me');
    const rev = (await client.get(electionKey).exec()).kvs[0]?.create_revision as string;
    const redis = new Redis(services().redisUrl, { lazyConnect: false });
    const c: Coordinator = {
      redis,
      current: model.table(++version),
      leaseRevoke: () => lease.revoke(),
      etcd: createTraefikPublisher({
        client,
        rootKey: root,
        metaPrefix: meta,
        current: () => c.current,
        fence: { key: electionKey, createRevision: rev },
        retryMs: 50,
      }),
    };
    toClose.push(async () => {
      await c.etcd.close();
      c.redis.disconnect();
    });
    return c;
  }

  const publish = (c: Coordinator, t: RoutingTable) => {
    pending.push(c.etcd.publish(t).catch(() => {}));
    pending.push(publishRoutingTable(c.redis, redisPrefix, t).catch(() => false));
  };

  let leader = await elect();
  publish(leader, leader.current);
  for (let i = 0; i < STEPS; i++) {
    let ev: string;
    if (rand() < 0.06) {
      ev = 'coordinator-restart';
      const old = leader;
      const stale = old.current;
      await old.leaseRevoke(); // the old leader's lease ran out (a kill -9, or a pause)
      leader = await elect();
      // The new leader's first (full) publish lands; then the old process wakes up and
      // publishes what it last saw: both sinks must refuse it.
      await Promise.all([
        leader.etcd.publish(leader.current).catch(() => {}),
        publishRoutingTable(leader.redis, redisPrefix, leader.current).catch(() => false),
      ]);
      const lateEtcd = old.etcd.publish(stale).then(
        () => true,
        () => false,
      );
      const lateRedis = publishRoutingTable(old.redis, redisPrefix, stale).catch(() => false);
      pending.push(
        Promise.all([lateEtcd, lateRedis]).then(([e, r]) => {
          // etcd: a resolved publish wrote nothing when a newer table was there; the key check
          // below is what proves it. Redis answers false when it refused.
          if (r) figures.lateWritesAccepted++;
          return e;
        }),
      );
    } else {
      ev = model.step();
      leader.current = model.table(++version);
      publish(leader, leader.current);
    }
    figures.events[ev] = (figures.events[ev] ?? 0) + 1;
    const j = rand();
    if (j < 0.3) await new Promise((r) => setImmediate(r));
    else if (j < 0.4) await new Promise((r) => setTimeout(r, Math.floor(rand() * 5)));
  }
  await Promise.all(pending);

  // Quiescence: compare both sinks with the final table and the final fleet.
  const final = leader.current;
  const owner = new Map<string, { name: string; replicaId: string }>();
  for (const [name, d] of model.deployments) {
    for (const [rid, r] of d.replicas)
      owner.set(`http://127.0.0.1:${r.port}`, { name, replicaId: rid });
  }
  const expected = new Map<string, string>();
  for (const name of NAMES) {
    for (const [k, v] of groupKeys(root, final, { kind: 'deployment', name }) ?? [])
      expected.set(k, v);
  }
  const actual = await client.getAll().prefix(`${root}/`).strings();
  for (const [k, v] of Object.entries(actual)) if (expected.get(k) !== v) figures.staleEtcdKeys++;
  for (const k of expected.keys()) if (!(k in actual)) figures.missingEtcdKeys++;
  for (const name of NAMES) {
    const rec = (await client.get(`${meta}d/${name}`).string()) ?? null;
    const ids: Record<string, string> = rec ? (JSON.parse(rec).replicas ?? {}) : {};
    for (const [k, url] of Object.entries(actual)) {
      const m = /\/http\/services\/flotilla_([a-z0-9-]+)\/loadBalancer\/servers\/\d+\/url$/.exec(k);
      if (!m || m[1] !== name) continue;
      const o = owner.get(url);
      // The URL belongs to this deployment's replica, and the record names that very replica.
      if (!o || o.name !== name || ids[k] !== o.replicaId) figures.crossedEtcd++;
    }
  }
  const stored = parseStoredTable(await leader.redis.hgetall(routingTableKey(redisPrefix)));
  if (!stored) throw new Error('no routing table in Redis');
  for (const [, d] of stored.entries) {
    const live = model.deployments.get(d.name);
    if (!live || live.id !== d.deploymentId) {
      figures.staleRedisEntries++;
      continue;
    }
    for (const r of d.routes) {
      const o = owner.get(r.url);
      if (!o || o.name !== d.name || o.replicaId !== r.replicaId) figures.crossedRedis++;
    }
  }
  for (const d of final.deployments)
    if (![...stored.entries.values()].some((e) => e.deploymentId === d.deploymentId))
      figures.staleRedisEntries++;
  return figures;
}

describe('routing sinks under churn', () => {
  it(
    'after seeded health flips, scale-ins, deletions and coordinator restarts with reused ports: 0 stale etcd keys, 0 crossed routes in etcd or Redis',
    async () => {
      const first = Number(process.env.FLOTILLA_TEST_SEED) || Math.floor(Math.random() * 2 ** 31);
      console.log(`[routing-stress] seeds ${first}..${first + RUNS - 1}, ${STEPS} steps each`);
      const total: Figures = {
        events: {},
        staleEtcdKeys: 0,
        missingEtcdKeys: 0,
        crossedEtcd: 0,
        staleRedisEntries: 0,
        crossedRedis: 0,
        lateWritesAccepted: 0,
      };
      const bad: string[] = [];
      for (let i = 0; i < RUNS; i++) {
        const f = await oneRun(first + i, `${prefix}s${i}/`);
        for (const [k, v] of Object.entries(f.events)) total.events[k] = (total.events[k] ?? 0) + v;
        for (const k of [
          'staleEtcdKeys',
          'missingEtcdKeys',
          'crossedEtcd',
          'staleRedisEntries',
          'crossedRedis',
          'lateWritesAccepted',
        ] as const) {
          total[k] += f[k];
          if (f[k] > 0) bad.push(`seed ${first + i}: ${k}=${f[k]}`);
        }
        for (const c of toClose.splice(0).reverse()) await c().catch(() => {});
      }
      console.log(`[routing-stress] ${RUNS} runs x ${STEPS} steps: ${JSON.stringify(total)}`);
      expect(bad).toEqual([]);
    },
    120_000 + RUNS * STEPS * 200,
  );
});
