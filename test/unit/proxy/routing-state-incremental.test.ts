import { describe, expect, it } from 'vitest';
import type { DeploymentRoutes, RouteState, RoutingTable } from '../../../src/domain/routing.ts';
import { lazyRoutingTable, withChange } from '../../../src/domain/routing-change.ts';
import { OutlierDetector } from '../../../src/proxy/outlier-detector.ts';
import { createProxyMetrics } from '../../../src/proxy/proxy-metrics.ts';
import { RoutingState, type Upstream } from '../../../src/proxy/routing-state.ts';

function dep(id: string, routes: [string, RouteState][], name = `n-${id}`): DeploymentRoutes {
  return {
    deploymentId: id,
    name,
    routing: { strategy: 'round_robin', request_timeout_s: 30, retries: 2 },
    routes: routes.map(([rid, state], i) => ({
      routeId: rid,
      replicaId: `rep-${rid}`,
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

/** A table whose deployment list throws when read: proves a change never reads it. */
function changeOnly(
  version: number,
  base: number,
  upserted: DeploymentRoutes[],
  removed: { deploymentId: string; name: string }[] = [],
  endpoints: RoutingTable['endpoints'] = [],
  endpointsChanged = false,
): RoutingTable {
  const t = lazyRoutingTable(version, endpoints, () => {
    throw new Error('the whole table was read');
  });
  return withChange(t, { version, base, upserted, removed, endpointsChanged });
}

describe('routing state: per-deployment changes', () => {
  it('applies a change on top of its base without reading the whole table', () => {
    const s = state();
    s.apply({
      version: 1,
      deployments: [dep('a', [['a1', 'HEALTHY']]), dep('b', [['b1', 'HEALTHY']])],
      endpoints: [],
    });
    const b = s.deployment('n-b');
    const b1 = b?.routes[0];
    s.apply(
      changeOnly(2, 1, [
        dep('a', [
          ['a1', 'UNHEALTHY'],
          ['a2', 'HEALTHY'],
        ]),
      ]),
    );
    expect(s.version).toBe(2);
    expect(s.deployment('n-a')?.targets.map((u) => u.routeId)).toEqual(['a2']);
    expect(s.deployment('n-b')).toBe(b);
    expect(s.deployment('n-b')?.routes[0]).toBe(b1);
  });

  it('retires the routes a change drops and removes the deployments it removes', () => {
    const s = state();
    s.apply({
      version: 1,
      deployments: [
        dep('a', [
          ['a1', 'HEALTHY'],
          ['a2', 'HEALTHY'],
        ]),
        dep('b', [['b1', 'HEALTHY']]),
      ],
      endpoints: [],
    });
    const a2 = s.deployment('n-a')?.routes[1];
    s.apply(
      changeOnly(2, 1, [dep('a', [['a1', 'HEALTHY']])], [{ deploymentId: 'b', name: 'n-b' }]),
    );
    expect(a2?.retired).toBe(true);
    expect(s.deployment('n-b')).toBeUndefined();
    expect(s.lookup('b')).toBeUndefined();
    expect(s.deployment('a')?.name).toBe('n-a');
  });

  it('follows a rename, and points endpoint backends at what names resolve to now', () => {
    const s = state();
    s.apply({
      version: 1,
      deployments: [dep('a', [['a1', 'HEALTHY']])],
      endpoints: [{ name: 'ep', backends: [{ deployment: 'later', weight: 1 }] }],
    });
    const ep = s.lookup('ep');
    expect(ep?.kind).toBe('endpoint');
    expect(ep?.kind === 'endpoint' ? ep.backends[0]?.target : 'x').toBeUndefined();
    s.apply(changeOnly(2, 1, [dep('c', [['c1', 'HEALTHY']], 'later')]));
    expect(ep?.kind === 'endpoint' ? ep.backends[0]?.target?.id : undefined).toBe('c');
    s.apply(changeOnly(3, 2, [dep('a', [['a1', 'HEALTHY']], 'renamed')]));
    expect(s.lookup('n-a')).toBeUndefined();
    expect(s.deployment('renamed')?.id).toBe('a');
  });

  it('reads the whole table when the change is not on top of the version it holds', () => {
    const s = state();
    s.apply({ version: 1, deployments: [dep('a', [['a1', 'HEALTHY']])], endpoints: [] });
    const full = withChange(
      { version: 5, deployments: [dep('b', [['b1', 'HEALTHY']])], endpoints: [] },
      { version: 5, base: 4, upserted: [], removed: [], endpointsChanged: false },
    );
    s.apply(full);
    expect(s.version).toBe(5);
    expect(s.deployment('n-a')).toBeUndefined();
    expect(s.deployment('n-b')?.targets).toHaveLength(1);
  });
});
