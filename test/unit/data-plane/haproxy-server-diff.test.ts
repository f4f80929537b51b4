/** Runtime API commands that move HAProxy's servers from one table to the next. */
import { describe, expect, it } from 'vitest';
import { backendsOf, haproxyPaths } from '../../../src/data-plane/haproxy/config.ts';
import { appliedFrom, diffServers } from '../../../src/data-plane/haproxy/server-diff.ts';
import type { RouteState, RoutingTable } from '../../../src/domain/routing.ts';

const paths = haproxyPaths('/run/fl');

function table(routes: [string, RouteState, number?, number?][]): RoutingTable {
  return {
    version: 1,
    endpoints: [],
    deployments: [
      {
        deploymentId: 'd',
        name: 'm',
        routing: { strategy: 'weighted', request_timeout_s: 30, retries: 2 },
        routes: routes.map(([id, state, weight, port]) => ({
          routeId: id,
          replicaId: `rep-${id}`,
          url: `http://127.0.0.1:${port ?? 9000}`,
          state,
          weight: weight ?? 1,
        })),
      },
    ],
  };
}

describe('haproxy server diff', () => {
  it('adds a server in maintenance, maps it, then makes it ready', () => {
    const applied = appliedFrom(backendsOf(table([['a', 'HEALTHY']])));
    const d = diffServers(
      applied,
      backendsOf(
        table([
          ['a', 'HEALTHY'],
          ['b', 'HEALTHY', 2, 9001],
        ]),
      ),
      paths,
    );
    expect(d.commands).toEqual([
      'add server d_d/b 127.0.0.1:9001 weight 2 maxconn 3',
      `add map ${paths.replicasMap} b rep-b`,
      `add map ${paths.failStaticMap} b 0`,
      'set server d_d/b state ready',
    ]);
    expect(d.removals).toEqual([]);
  });

  it('drains, re-weights, moves and flags fail-static servers with one command each', () => {
    const applied = appliedFrom(
      backendsOf(
        table([
          ['a', 'HEALTHY'],
          ['b', 'HEALTHY'],
          ['c', 'DEGRADED'],
        ]),
      ),
    );
    const next = diffServers(
      applied,
      backendsOf(
        table([
          ['a', 'TERMINATING'],
          ['b', 'HEALTHY', 5, 9100],
          ['c', 'DEGRADED'],
        ]),
      ),
      paths,
    );
    expect(next.commands).toEqual([
      'set server d_d/a state drain',
      'set server d_d/b addr 127.0.0.1 port 9100',
      'set server d_d/b weight 5',
    ]);
    const failStatic = diffServers(
      next.next,
      backendsOf(
        table([
          ['a', 'TERMINATING'],
          ['b', 'UNHEALTHY', 5, 9100],
          ['c', 'DEGRADED'],
        ]),
      ),
      paths,
    );
    expect(failStatic.commands).toEqual([
      'set server d_d/b state maint',
      `set map ${paths.failStaticMap} c 1`,
      'set server d_d/c state ready',
    ]);
  });

  it('puts a removed server in maintenance once and lists it for deletion; a returning one is reused', () => {
    const applied = appliedFrom(
      backendsOf(
        table([
          ['a', 'HEALTHY'],
          ['b', 'HEALTHY'],
        ]),
      ),
    );
    const gone = diffServers(applied, backendsOf(table([['b', 'HEALTHY']])), paths);
    expect(gone.commands).toEqual(['set server d_d/a state maint']);
    expect(gone.removals).toEqual([{ backend: 'd_d', server: 'a' }]);
    const still = diffServers(gone.next, backendsOf(table([['b', 'HEALTHY']])), paths);
    expect(still.commands).toEqual([]);
    expect(still.removals).toEqual([]);
    const back = diffServers(
      gone.next,
      backendsOf(
        table([
          ['a', 'HEALTHY'],
          ['b', 'HEALTHY'],
        ]),
      ),
      paths,
    );
    expect(back.commands).toEqual(['set server d_d/a state ready']);
    expect(back.next.get('d_d')?.get('a')?.removing).toBeUndefined();
  });

  it('sends nothing when the table did not change', () => {
    const bs = backendsOf(
      table([
        ['a', 'HEALTHY'],
        ['b', 'TERMINATING'],
      ]),
    );
    expect(diffServers(appliedFrom(bs), bs, paths).commands).toEqual([]);
  });
});
