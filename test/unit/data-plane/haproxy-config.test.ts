/** The HAProxy config rendered from a routing table: pure, checked line by line. */
import { describe, expect, it } from 'vitest';
import {
  backendsOf,
  haproxyPaths,
  renderConfig,
  renderMaps,
  structureKey,
} from '../../../src/data-plane/haproxy/config.ts';
import type { DeploymentRoutes, RouteState, RoutingTable } from '../../../src/domain/routing.ts';

const paths = haproxyPaths('/run/fl');
const listen = { host: '127.0.0.1', port: 8000, threads: 1 };

function dep(
  name: string,
  routes: [string, RouteState, number?][],
  extra: Partial<DeploymentRoutes> = {},
): DeploymentRoutes {
  return {
    deploymentId: `id-${name}`,
    name,
    routing: { strategy: 'round_robin', request_timeout_s: 30, retries: 2 },
    routes: routes.map(([id, state, weight], i) => ({
      routeId: `route-${id}`,
      replicaId: id,
      url: `http://127.0.0.1:${9000 + i}`,
      state,
      weight: weight ?? 1,
    })),
    ...extra,
  };
}
const t = (...deployments: DeploymentRoutes[]): RoutingTable => ({
  version: 1,
  deployments,
  endpoints: [],
});

describe('haproxy config', () => {
  it('makes HEALTHY routes ready, TERMINATING ones drain and the rest maint', () => {
    const [b] = backendsOf(
      t(
        dep('m', [
          ['a', 'HEALTHY'],
          ['b', 'TERMINATING'],
          ['c', 'DEGRADED'],
          ['d', 'UNHEALTHY'],
        ]),
      ),
    );
    expect(b!.servers.map((s) => [s.replicaId, s.state, s.failStatic])).toEqual([
      ['a', 'ready', false],
      ['b', 'drain', false],
      ['c', 'maint', false],
      ['d', 'maint', false],
    ]);
  });

  it('fails static: with no HEALTHY route, DEGRADED ones are ready and marked', () => {
    const [b] = backendsOf(
      t(
        dep('m', [
          ['c', 'DEGRADED'],
          ['d', 'UNHEALTHY'],
        ]),
      ),
    );
    expect(b!.servers.map((s) => [s.replicaId, s.state, s.failStatic])).toEqual([
      ['c', 'ready', true],
      ['d', 'maint', false],
    ]);
  });

  it('renders one backend per deployment with its balance, retries, timeouts and per-server maxconn', () => {
    const cfg = renderConfig(
      listen,
      backendsOf(
        t(
          dep(
            'm',
            [
              ['a', 'HEALTHY', 3],
              ['b', 'UNHEALTHY'],
            ],
            {
              routing: { strategy: 'weighted', request_timeout_s: 0.5, retries: 1 },
              admission: { max_concurrent_requests: 7, max_queue_size: 20, queue_timeout_s: 4 },
            },
          ),
          dep('n', [], {
            routing: { strategy: 'least_connections', request_timeout_s: 9, retries: 0 },
          }),
        ),
      ),
      paths,
    );
    expect(cfg).toContain('bind 127.0.0.1:8000');
    expect(cfg).toContain('backend d_id-m\n');
    expect(cfg).toMatch(
      /backend d_id-m[\s\S]*balance roundrobin[\s\S]*retries 1[\s\S]*timeout server 500ms[\s\S]*timeout queue 4000ms[\s\S]*retry-on conn-failure empty-response 502 503/,
    );
    expect(cfg).toContain('if { queue ge 20 } { be_conn_free lt 1 }');
    expect(cfg).toContain('  server route-a 127.0.0.1:9000 weight 3 maxconn 7\n');
    expect(cfg).toContain('  server route-b 127.0.0.1:9001 weight 1 maxconn 7 disabled\n');
    const n = cfg.slice(cfg.indexOf('backend d_id-n'));
    expect(n).toContain('balance leastconn');
    expect(n).toContain('retries 0');
    expect(n).not.toContain('retry-on');
    expect(cfg).toContain('"code":"no_healthy_replicas"');
    expect(cfg).toContain(`map_str(${paths.backendsMap})`);
  });

  it('keeps per-request work to the contract: no traffic log, backend from the map, prefix stripped per backend', () => {
    const cfg = renderConfig(listen, backendsOf(t(dep('m', [['a', 'HEALTHY']]))), paths);
    const frontend = cfg.slice(cfg.indexOf('frontend flotilla'), cfg.indexOf('\nbackend '));
    // A traffic log line per request would be built, then dropped by the warning filter.
    expect(frontend).toContain('\n  no log\n');
    expect(frontend).toContain(
      `use_backend %[path,field(2,/),url_dec,map_str(${paths.backendsMap})]`,
    );
    expect(frontend).not.toContain('set-var');
    expect(frontend).not.toContain('http-request replace-path');
    // The dot-dot regex only runs on paths holding a dot pair.
    expect(frontend).toContain('if { path -m sub -i .. %2e } { path,url_dec -m reg');
    // An unknown name falls to a backend that answers 404 not_found.
    expect(frontend).toContain('default_backend flotilla_not_found');
    const notFound = cfg.slice(
      cfg.indexOf('\nbackend flotilla_not_found') + 1,
      cfg.indexOf('\nbackend d_id-m'),
    );
    expect(notFound).toMatch(/\n {2}http-request return status 404 .*"code":"not_found"/);
    // /health, /ready and /metrics are answered there, not tested for every proxied request.
    expect(frontend).not.toContain('/health');
    expect(frontend).not.toContain('/metrics');
    expect(notFound).toContain('if { path /health /ready }');
    expect(notFound).toContain('http-request use-service prometheus-exporter if { path /metrics }');
    // The prefix is stripped by field, not by a regex; list matches are not cached.
    const m = cfg.slice(cfg.indexOf('backend d_id-m'));
    expect(m).toContain('  http-request set-path /%[path,field(3,/,0)]\n');
    expect(cfg).not.toContain('replace-path');
    expect(cfg).toContain('\n  tune.pattern.cache-size 0\n');
  });

  it('copies a request for a retry on a 502/503 only when another server could take it', () => {
    const cfg = renderConfig(
      listen,
      backendsOf(
        t(
          dep('m', [['a', 'HEALTHY']]),
          dep('n', [['b', 'HEALTHY']], {
            routing: { strategy: 'round_robin', request_timeout_s: 9, retries: 0 },
          }),
        ),
      ),
      paths,
    );
    const m = cfg.slice(cfg.indexOf('backend d_id-m'), cfg.indexOf('backend d_id-n'));
    expect(m).toContain('retry-on conn-failure empty-response 502 503');
    expect(m).toContain('  http-request disable-l7-retry if { nbsrv lt 2 }\n');
    const n = cfg.slice(cfg.indexOf('backend d_id-n'));
    expect(n).not.toContain('disable-l7-retry');
  });

  it('gives every server a unique, valid name and maps names to deployments and replicas', () => {
    const bs = backendsOf(
      t(dep('m', [['a b/1', 'HEALTHY']]), {
        ...dep('n', [['a b/1', 'HEALTHY']]),
        deploymentId: 'id-n',
      }),
    );
    const names = bs.flatMap((b) => b.servers.map((s) => s.name));
    expect(names).toEqual(['route-a_b_1', 'route-a_b_1_2']);
    const maps = renderMaps(bs);
    expect(maps.backends).toBe('m d_id-m\nn d_id-n\n');
    expect(maps.replicas).toBe('route-a_b_1 a b/1\nroute-a_b_1_2 a b/1\n');
    expect(maps.failStatic).toBe('route-a_b_1 0\nroute-a_b_1_2 0\n');
  });

  it('changes the structure key for settings and deployments, not for servers', () => {
    const key = (d: DeploymentRoutes[]) => structureKey(listen, backendsOf(t(...d)));
    const base = key([dep('m', [['a', 'HEALTHY']])]);
    expect(
      key([
        dep('m', [
          ['a', 'UNHEALTHY'],
          ['b', 'HEALTHY', 4],
        ]),
      ]),
    ).toBe(base);
    expect(
      key([dep('m', [['a', 'HEALTHY']], { admission: { max_concurrent_requests: 9 } })]),
    ).not.toBe(base);
    expect(
      key([
        dep('m', [['a', 'HEALTHY']], {
          routing: { strategy: 'round_robin', request_timeout_s: 5, retries: 2 },
        }),
      ]),
    ).not.toBe(base);
    expect(key([dep('m', [['a', 'HEALTHY']]), dep('n', [])])).not.toBe(base);
  });
});
