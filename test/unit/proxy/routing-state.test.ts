import { describe, expect, it } from 'vitest';
import type { DeploymentRoutes, RouteState, RoutingTable } from '../../../src/domain/routing.ts';
import { OutlierDetector } from '../../../src/proxy/outlier-detector.ts';
import { createProxyMetrics } from '../../../src/proxy/proxy-metrics.ts';
import { RoutingState, type Upstream } from '../../../src/proxy/routing-state.ts';
import { createStaticTableSource } from '../../../src/proxy/routing-table-source.ts';

function dep(name: string, routes: [string, RouteState][]): DeploymentRoutes {
  return {
    deploymentId: `id-${name}`,
    name,
    routing: { strategy: 'round_robin', request_timeout_s: 30, retries: 2 },
    routes: routes.map(([id, state], i) => ({
      routeId: id,
      replicaId: `rep-${id}`,
      url: `http://127.0.0.1:${10000 + i}`,
      state,
      weight: 1,
    })),
  };
}

function state() {
  const metrics = createProxyMetrics(() => []);
  const outliers = new OutlierDetector<Upstream>(undefined, {
    peers: (u) => u.deployment.targets,
    ejected: () => {},
    returned: () => {},
  });
  return new RoutingState({ random: Math.random, metrics, outliers, warn: () => {} });
}

const tbl = (
  version: number,
  deployments: DeploymentRoutes[],
  endpoints: RoutingTable['endpoints'] = [],
) => ({
  version,
  deployments,
  endpoints,
});

describe('routing state', () => {
  it('serves only HEALTHY routes, and DEGRADED ones only when none is HEALTHY (fail static)', () => {
    const s = state();
    s.apply(
      tbl(1, [
        dep('m', [
          ['a', 'HEALTHY'],
          ['b', 'DEGRADED'],
          ['c', 'UNHEALTHY'],
          ['d', 'TERMINATING'],
        ]),
      ]),
    );
    const m = s.deployment('m')!;
    expect(m.targets.map((u) => u.routeId)).toEqual(['a']);
    expect(m.failStatic).toBe(false);
    expect(m.admission.capacity).toBe(3);
    s.apply(
      tbl(2, [
        dep('m', [
          ['a', 'UNHEALTHY'],
          ['b', 'DEGRADED'],
          ['d', 'TERMINATING'],
        ]),
      ]),
    );
    expect(m.targets.map((u) => u.routeId)).toEqual(['b']);
    expect(m.failStatic).toBe(true);
    s.apply(
      tbl(3, [
        dep('m', [
          ['a', 'UNHEALTHY'],
          ['d', 'TERMINATING'],
          ['e', 'PENDING'],
        ]),
      ]),
    );
    expect(m.targets).toEqual([]);
    expect(m.admission.capacity).toBe(0);
  });

  it('ignores a table older than the one it has', () => {
    const s = state();
    s.apply(tbl(5, [dep('m', [['a', 'HEALTHY']])]));
    s.apply(tbl(4, []));
    expect(s.deployment('m')).toBeDefined();
    expect(s.version).toBe(5);
  });

  it('keeps counting in-flight requests of a route after it left the table', () => {
    const s = state();
    s.apply(tbl(1, [dep('m', [['a', 'HEALTHY']])]));
    const u = s.deployment('m')!.targets[0]!;
    u.inflight = 2;
    s.apply(tbl(2, [dep('m', [['a', 'TERMINATING']])]));
    expect(s.inflight('a')).toBe(2);
    expect(s.deployment('m')!.targets).toEqual([]);
    s.apply(tbl(3, [dep('m', [])]));
    expect(s.inflight('a')).toBe(2);
    u.release();
    u.release();
    expect(s.inflight('a')).toBe(0);
  });

  it('keeps per-route state (same object) across tables that only change states', () => {
    const s = state();
    s.apply(
      tbl(1, [
        dep('m', [
          ['a', 'HEALTHY'],
          ['b', 'HEALTHY'],
        ]),
      ]),
    );
    const before = s.deployment('m')!.targets[0];
    s.apply(
      tbl(2, [
        dep('m', [
          ['a', 'HEALTHY'],
          ['b', 'UNHEALTHY'],
        ]),
      ]),
    );
    expect(s.deployment('m')!.targets[0]).toBe(before);
  });

  it('drops a backend with nothing to serve from an endpoint split; the others take its share', () => {
    const s = state();
    const endpoints = [
      {
        name: 'chat',
        backends: [
          { deployment: 'blue', weight: 90 },
          { deployment: 'green', weight: 10 },
          { deployment: 'gone', weight: 50 },
        ],
      },
    ];
    s.apply(
      tbl(1, [dep('blue', [['b1', 'HEALTHY']]), dep('green', [['g1', 'HEALTHY']])], endpoints),
    );
    const chat = s.lookup('chat');
    expect(chat?.kind).toBe('endpoint');
    if (chat?.kind !== 'endpoint') return;
    const counts: Record<string, number> = {};
    for (let i = 0; i < 100; i++) {
      const d = chat.pick(null)!.name;
      counts[d] = (counts[d] ?? 0) + 1;
    }
    expect(counts).toEqual({ blue: 90, green: 10 });
    s.apply(
      tbl(2, [dep('blue', [['b1', 'UNHEALTHY']]), dep('green', [['g1', 'HEALTHY']])], endpoints),
    );
    for (let i = 0; i < 10; i++) expect(chat.pick(null)!.name).toBe('green');
    s.apply(tbl(3, [dep('blue', [['b1', 'UNHEALTHY']])], endpoints));
    expect(chat.pick(null)).toBeUndefined();
  });

  it('resolves names to deployments before endpoints, and deployments by id too', () => {
    const s = state();
    s.apply(
      tbl(
        1,
        [dep('m', [['a', 'HEALTHY']])],
        [
          { name: 'm', backends: [] },
          { name: 'e', backends: [] },
        ],
      ),
    );
    expect(s.lookup('m')?.kind).toBe('deployment');
    expect(s.lookup('id-m')?.kind).toBe('deployment');
    expect(s.lookup('e')?.kind).toBe('endpoint');
  });
});

describe('static table source', () => {
  it('publishes newer tables to subscribers and ignores older ones', () => {
    const src = createStaticTableSource();
    expect(src.current().version).toBe(0);
    const seen: number[] = [];
    const off = src.subscribe((t) => seen.push(t.version));
    expect(src.set(tbl(3, []))).toBe(true);
    expect(src.set(tbl(2, []))).toBe(false);
    expect(src.set(tbl(3, []))).toBe(true);
    off();
    src.set(tbl(4, []));
    expect(seen).toEqual([3, 3]);
    expect(src.current().version).toBe(4);
  });
});
