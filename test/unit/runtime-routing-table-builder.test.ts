import { describe, expect, it } from 'vitest';
import type { ReplicaEntry } from '../../machines/deployment.ts';
import { DEFAULT_ROUTING, type RoutingTable } from '../../src/domain/routing.ts';
import { changeOf } from '../../src/domain/routing-change.ts';
import type { SessionSpec } from '../../src/domain/session.ts';
import { RoutingPublisher } from '../../src/runtime/routing-publisher.ts';
import {
  buildDeploymentRouting,
  buildRoutingTable,
  type DeploymentRouting,
} from '../../src/runtime/routing-table-builder.ts';

const health = {
  path: '/health',
  interval_s: 5,
  timeout_s: 2,
  healthy_threshold: 1,
  unhealthy_threshold: 2,
  startup_timeout_s: 60,
};
const session = { health } as SessionSpec;
const sessions = (rev: string) => (rev === 'rev-1' ? session : undefined);

function replica(
  n: number,
  routeState: ReplicaEntry['routeState'],
  endpoint: string | null = `http://127.0.0.1:${9000 + n}`,
): [string, ReplicaEntry] {
  return [
    `r${n}`,
    {
      revisionId: 'rev-1',
      state: 'HEALTHY',
      routeId: `t${n}`,
      routeState,
      endpoint,
      leaving: false,
      seq: n,
    },
  ];
}

const dep = (id: string) => ({ id, name: `name-${id}`, routing: DEFAULT_ROUTING });

describe('routing-table builder', () => {
  it('gives each route the weight of the revision its replica runs (default 1)', () => {
    const bySession: Record<string, SessionSpec> = {
      'rev-1': { health, weight: 1 } as SessionSpec,
      'rev-3': { health, weight: 3 } as SessionSpec,
      'rev-unset': { health } as SessionSpec,
    };
    const [, one] = replica(1, 'HEALTHY');
    const [, three] = replica(2, 'HEALTHY');
    const [, unset] = replica(3, 'HEALTHY');
    const replicas = {
      r1: { ...one, revisionId: 'rev-1' },
      r2: { ...three, revisionId: 'rev-3' },
      r3: { ...unset, revisionId: 'rev-unset' },
    };
    const { entry } = buildDeploymentRouting(dep('a'), { replicas }, (rev) => bySession[rev]);
    expect(entry.routes.map((r) => [r.replicaId, r.weight])).toEqual([
      ['r1', 1],
      ['r2', 3],
      ['r3', 1],
    ]);
  });

  it('carries routes that have an endpoint and a table state, and probes the probed states only', () => {
    const replicas = Object.fromEntries([
      replica(1, 'HEALTHY'),
      replica(2, 'TERMINATING'),
      replica(3, 'PROVISIONING', null),
      replica(4, 'TERMINATED'),
      replica(5, 'DEGRADED'),
    ]);
    const { entry, targets } = buildDeploymentRouting(dep('a'), { replicas }, sessions);
    expect(entry.routes.map((r) => [r.routeId, r.state])).toEqual([
      ['t1', 'HEALTHY'],
      ['t2', 'TERMINATING'],
      ['t5', 'DEGRADED'],
    ]);
    expect(entry.routes[0]?.health).toEqual(health);
    expect(targets.map((t) => t.routeId)).toEqual(['t1', 't5']);
    expect(entry).not.toHaveProperty('admission');
  });

  it('gives no probe target to a route whose revision has no session yet', () => {
    const replicas = Object.fromEntries([replica(1, 'HEALTHY')]);
    const built = buildDeploymentRouting(dep('a'), { replicas }, () => undefined);
    expect(built.entry.routes).toHaveLength(1);
    expect(built.targets).toEqual([]);
  });

  it('carries admission settings when the deployment has them', () => {
    const built = buildDeploymentRouting(
      { ...dep('a'), admission: { max_concurrent_requests: 7 } },
      { replicas: {} },
      sessions,
    );
    expect(built.entry.admission).toEqual({ max_concurrent_requests: 7 });
  });

  it('builds a whole table as the concatenation of its deployments', () => {
    const ctx = { replicas: Object.fromEntries([replica(1, 'HEALTHY')]) };
    const { table, targets } = buildRoutingTable(
      7,
      [
        { deployment: dep('a'), context: ctx },
        { deployment: dep('b'), context: { replicas: {} } },
      ],
      sessions,
    );
    expect(table.version).toBe(7);
    expect(table.deployments.map((d) => d.deploymentId)).toEqual(['a', 'b']);
    expect(targets).toHaveLength(1);
  });
});

describe('routing publisher', () => {
  function publisher(entries: Map<string, DeploymentRouting | null>) {
    const built: string[] = [];
    let clock = 1_000;
    const pub = new RoutingPublisher({
      build: (id) => {
        built.push(id);
        return entries.get(id) ?? null;
      },
      now: () => clock,
      warn: () => {},
      defer: () => {},
    });
    const seen: RoutingTable[] = [];
    pub.subscribe((t) => seen.push(t));
    return { pub, built, seen, tick: (ms: number) => (clock += ms) };
  }
  const routing = (id: string, routes = 1): DeploymentRouting =>
    buildDeploymentRouting(
      dep(id),
      {
        replicas: Object.fromEntries(
          Array.from({ length: routes }, (_, i) => replica(i, 'HEALTHY')),
        ),
      },
      sessions,
    );

  it('rebuilds only the deployments marked dirty and hands listeners just those', () => {
    const entries = new Map<string, DeploymentRouting | null>();
    for (let i = 0; i < 100; i++) entries.set(`d${i}`, routing(`d${i}`));
    const { pub, built, seen } = publisher(entries);
    for (let i = 0; i < 100; i++) pub.markDirty(`d${i}`);
    pub.publishNow();
    expect(built).toHaveLength(100);
    built.length = 0;
    pub.markDirty('d42');
    const t = pub.publishNow();
    expect(built).toEqual(['d42']);
    const change = changeOf(t);
    expect(change?.upserted.map((d) => d.deploymentId)).toEqual(['d42']);
    expect(change?.base).toBe(seen[0]?.version);
    expect(t.deployments).toHaveLength(100);
  });

  it('publishes a removal when a dirty deployment has no entry any more', () => {
    const entries = new Map<string, DeploymentRouting | null>([
      ['a', routing('a')],
      ['b', routing('b')],
    ]);
    const { pub } = publisher(entries);
    pub.markDirty('a');
    pub.markDirty('b');
    pub.publishNow();
    entries.set('a', null);
    pub.markDirty('a');
    const t = pub.publishNow();
    expect(changeOf(t)?.removed).toEqual([{ deploymentId: 'a', name: 'name-a' }]);
    expect(t.deployments.map((d) => d.deploymentId)).toEqual(['b']);
  });

  it('keeps the probe targets in step with the entries, by route', () => {
    const entries = new Map<string, DeploymentRouting | null>([['a', routing('a', 2)]]);
    const { pub } = publisher(entries);
    pub.markDirty('a');
    pub.publishNow();
    expect(pub.probeTargets().map((t) => t.routeId)).toEqual(['t0', 't1']);
    expect(pub.probeTarget('t1')?.replicaId).toBe('r1');
    entries.set('a', routing('a', 1));
    pub.markDirty('a');
    pub.publishNow();
    expect(pub.probeTargets().map((t) => t.routeId)).toEqual(['t0']);
    expect(pub.probeTarget('t1')).toBeUndefined();
  });

  it('never publishes a version lower than the clock or than the previous one', () => {
    const { pub, tick } = publisher(new Map());
    const v1 = pub.publishNow().version;
    expect(v1).toBe(1_000);
    const v2 = pub.publishNow().version;
    expect(v2).toBe(1_001);
    tick(10_000);
    expect(pub.publishNow().version).toBe(11_000);
  });

  it('coalesces the changes of one turn into one publish', () => {
    let run: (() => void) | undefined;
    const entries = new Map([
      ['a', routing('a')],
      ['b', routing('b')],
    ]);
    const pub = new RoutingPublisher({
      build: (id) => entries.get(id) ?? null,
      now: () => 5,
      warn: () => {},
      defer: (fn) => {
        run = fn;
      },
    });
    const seen: RoutingTable[] = [];
    pub.subscribe((t) => seen.push(t));
    pub.markDirty('a');
    pub.markDirty('b');
    pub.markDirty('a');
    expect(seen).toHaveLength(0);
    run?.();
    expect(seen).toHaveLength(1);
    expect(changeOf(seen[0]!)?.upserted.map((d) => d.deploymentId)).toEqual(['a', 'b']);
  });
});
