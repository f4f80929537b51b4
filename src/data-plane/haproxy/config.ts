/**
 * The HAProxy data plane's configuration, rendered from a routing table. Pure: text in,
 * text out; src/data-plane/haproxy/haproxy-data-plane.ts writes it and drives HAProxy.
 *
 * Layout: one frontend that refuses dot-dot paths and picks the backend by the first path
 * segment through a map (name -> backend); a default backend for every other name, which
 * answers /health, /ready and /metrics and 404 for the rest; one backend per deployment that
 * strips that segment and whose servers are its routes. Nothing per request beyond what the
 * contract needs (no traffic log, no regex on paths without a dot pair or to strip the
 * prefix, no pattern cache): bench/proxy compares it with nginx, and bench/proxy/haproxy-cost.ts
 * counts the instructions each directive costs. What may change at run time without a
 * reload (servers, their weight, state and address, and the two maps keyed by server name)
 * is kept out of `structureKey`; everything else is in it, and a change of it reloads.
 */
import type { DeploymentRoutes, RouteEntry, RoutingTable } from '../../domain/routing.ts';
import { resolveAdmissionConfig } from '../../proxy/admission.ts';

/** Files and sockets of one managed HAProxy, all inside its own directory. */
export interface HaproxyPaths {
  dir: string;
  config: string;
  /** Runtime API (level admin); also hands the listeners to the next worker on reload. */
  adminSocket: string;
  /** Master CLI (`-S`). */
  masterSocket: string;
  /** `<name>` -> backend name, read by the frontend. */
  backendsMap: string;
  /** server name -> replica id (`x-flotilla-replica`). */
  replicasMap: string;
  /** server name -> 1 when it serves because nothing is HEALTHY (`x-flotilla-fail-static`). */
  failStaticMap: string;
}

export function haproxyPaths(dir: string): HaproxyPaths {
  return {
    dir,
    config: `${dir}/haproxy.cfg`,
    adminSocket: `${dir}/admin.sock`,
    masterSocket: `${dir}/master.sock`,
    backendsMap: `${dir}/backends.map`,
    replicasMap: `${dir}/replicas.map`,
    failStaticMap: `${dir}/fail-static.map`,
  };
}

/** Server states HAProxy's runtime API can set (`set server <b>/<s> state <x>`). */
export type ServerState = 'ready' | 'drain' | 'maint';

/** One server as the table wants it. */
export interface ServerSpec {
  /** HAProxy server name, unique in the whole config (the maps are keyed by it). */
  name: string;
  routeId: string;
  replicaId: string;
  host: string;
  port: number;
  weight: number;
  maxconn: number;
  state: ServerState;
  /** Serves only because no route of its deployment is HEALTHY. */
  failStatic: boolean;
}

/** One backend (a deployment) as the table wants it. */
export interface BackendSpec {
  name: string;
  deploymentId: string;
  deploymentName: string;
  /** What the backend section says apart from its servers; a change of it reloads. */
  settings: BackendSettings;
  servers: ServerSpec[];
}

export interface BackendSettings {
  balance: 'roundrobin' | 'leastconn' | 'random(2)';
  retries: number;
  timeoutServerMs: number;
  timeoutQueueMs: number;
  maxQueue: number;
  maxconn: number;
  allowedPrefixes: string[];
}

/** Where HAProxy listens, and how many threads it runs. */
export interface ListenSpec {
  host: string;
  port: number;
  threads: number;
}

/** The frontend's default backend: a 404 for a name no deployment has (never a deployment's: those start with `d_`). */
const NOT_FOUND_BACKEND = 'flotilla_not_found';

const NAME_SAFE = /[^A-Za-z0-9_.-]/g;

/** A name HAProxy accepts (letters, digits, `_ . -`), readable and stable. */
export function safeName(prefix: string, id: string): string {
  return `${prefix}${id.replace(NAME_SAFE, '_')}`.slice(0, 100);
}

/** Weight in HAProxy's 0..256; only the weighted strategy uses route weights. */
function serverWeight(d: DeploymentRoutes, r: RouteEntry): number {
  if (d.routing.strategy !== 'weighted') return 1;
  if (!Number.isFinite(r.weight) || r.weight <= 0) return 0;
  return Math.min(256, Math.max(1, Math.round(r.weight)));
}

const BALANCE: Record<DeploymentRoutes['routing']['strategy'], BackendSettings['balance']> = {
  round_robin: 'roundrobin',
  weighted: 'roundrobin',
  least_connections: 'leastconn',
  power_of_two_choices: 'random(2)',
};

function parseAddress(url: string): { host: string; port: number } | null {
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:') return null;
    const port = u.port ? Number(u.port) : 80;
    const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    return { host, port };
  } catch {
    return null;
  }
}

/**
 * The backends a table asks for, in table order. Servable routes (HEALTHY, or DEGRADED when
 * none is HEALTHY: fail static) are `ready`, TERMINATING ones `drain` (in-flight requests
 * finish, no new one), the others `maint`. Routes whose URL is not plain http are left out.
 */
export function backendsOf(table: RoutingTable): BackendSpec[] {
  const used = new Set<string>();
  const unique = (base: string) => {
    let name = base;
    for (let i = 2; used.has(name); i++) name = `${base}_${i}`;
    used.add(name);
    return name;
  };
  return table.deployments.map((d) => {
    const admission = resolveAdmissionConfig(d);
    const anyHealthy = d.routes.some((r) => r.state === 'HEALTHY');
    const servable = anyHealthy ? 'HEALTHY' : 'DEGRADED';
    const servers: ServerSpec[] = [];
    for (const r of d.routes) {
      const addr = parseAddress(r.url);
      if (!addr) continue;
      const state: ServerState =
        r.state === servable ? 'ready' : r.state === 'TERMINATING' ? 'drain' : 'maint';
      servers.push({
        name: unique(safeName('', r.routeId)),
        routeId: r.routeId,
        replicaId: r.replicaId,
        host: addr.host,
        port: addr.port,
        weight: serverWeight(d, r),
        maxconn: admission.max_concurrent_requests,
        state,
        failStatic: state === 'ready' && !anyHealthy,
      });
    }
    return {
      name: unique(safeName('d_', d.deploymentId)),
      deploymentId: d.deploymentId,
      deploymentName: d.name,
      settings: {
        balance: BALANCE[d.routing.strategy],
        retries: Math.max(0, Math.floor(d.routing.retries)),
        timeoutServerMs: Math.max(1, Math.round(d.routing.request_timeout_s * 1000)),
        timeoutQueueMs: Math.max(1, Math.round(admission.queue_timeout_s * 1000)),
        maxQueue: admission.max_queue_size,
        maxconn: admission.max_concurrent_requests,
        // A prefix with a quote or a space cannot be written as one HAProxy argument.
        allowedPrefixes: (d.routing.allowed_path_prefixes ?? []).filter((p) => /^[^'\s]+$/.test(p)),
      },
      servers,
    };
  });
}

/**
 * What needs a reload when it changes: the listener, and per backend its name, the name it
 * is routed by and its settings. Servers and the maps keyed by them are not in it.
 */
export function structureKey(listen: ListenSpec, backends: BackendSpec[]): string {
  return JSON.stringify({
    listen,
    backends: backends.map((b) => [b.name, b.deploymentName, b.settings]),
  });
}

/** A JSON error body in Flotilla's shape, as an HAProxy single-quoted string argument. */
function errorJson(code: string, message: string, detailPath = '(url)'): string {
  const body = JSON.stringify({
    error: { code, message, details: [{ path: detailPath, message }] },
  });
  // Inside '…' HAProxy takes everything literally but the quote itself (\u0027 in JSON).
  return `'${body.replace(/'/g, '\\u0027')}'`;
}

function serverLine(s: ServerSpec): string {
  const host = s.host.includes(':') ? `[${s.host}]` : s.host;
  // A drained server is weight 0 at start; `set server … state drain` keeps it so at run time.
  const weight = s.state === 'drain' ? 0 : s.weight;
  const parts = [`server ${s.name} ${host}:${s.port}`, `weight ${weight}`, `maxconn ${s.maxconn}`];
  if (s.state === 'maint') parts.push('disabled');
  return `  ${parts.join(' ')}`;
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) HAProxy does not remove by itself. */
const HOP_REQUEST = ['proxy-authorization', 'te', 'keep-alive', 'upgrade', 'proxy-connection'];
const HOP_RESPONSE = ['proxy-authenticate', 'keep-alive', 'upgrade', 'trailer'];

function backendSection(b: BackendSpec, paths: HaproxyPaths): string {
  const s = b.settings;
  const lines = [
    `backend ${b.name}`,
    `  # deployment ${JSON.stringify(b.deploymentName)} (${b.deploymentId})`,
    `  balance ${s.balance}`,
    `  retries ${s.retries}`,
    '  option redispatch 1',
    `  timeout server ${s.timeoutServerMs}ms`,
    `  timeout queue ${s.timeoutQueueMs}ms`,
    // The routing segment goes: /{name}/rest -> /rest (the frontend chose the backend by it);
    // fields 3 and on of the path, not a regex replace-path (about 700 instructions less).
    '  http-request set-path /%[path,field(3,/,0)]',
  ];
  // Not in a worker stopping after a reload: there nbsrv is 0 while its last accepted requests
  // still go to the servers.
  // Retried before the first byte of the answer reaches the client, each on another server.
  if (s.retries > 0) lines.push('  retry-on conn-failure empty-response 502 503');
  lines.push(
    `  http-request return status 503 content-type application/json hdr retry-after 1 string ${errorJson('no_healthy_replicas', `no replica of ${b.deploymentName} can serve`)} if { nbsrv lt 1 } !{ stopping }`,
    `  http-request return status 503 content-type application/json hdr retry-after 1 string ${errorJson('overloaded', `the queue of ${b.deploymentName} is full`)} if { queue ge ${Math.max(0, s.maxQueue)} } { be_conn_free lt 1 }`,
  );
  // To replay a request after a 502/503 or an empty answer, HAProxy (2.6) copies the whole
  // request buffer (tune.bufsize, 16 kB) before sending it: about 2.5 µs of CPU per request
  // here, the largest single cost against nginx. With one usable server there is no other
  // replica to retry on (the own proxy retries only on another one), so no copy is made;
  // connection failures are still retried.
  if (s.retries > 0) lines.push('  http-request disable-l7-retry if { nbsrv lt 2 }');
  if (s.allowedPrefixes.length > 0) {
    const acl = s.allowedPrefixes.map((p) => `'${p}'`).join(' ');
    lines.push(
      `  http-request return status 404 content-type application/json string ${errorJson('not_found', 'path not allowed for this deployment')} if !{ path -m beg ${acl} } || { path -m sub -i %2f %5c }`,
    );
  }
  for (const h of HOP_REQUEST) lines.push(`  http-request del-header ${h}`);
  for (const h of HOP_RESPONSE) lines.push(`  http-response del-header ${h}`);
  lines.push(
    `  http-response set-header x-flotilla-replica %[srv_name,map_str(${paths.replicasMap})]`,
    `  http-response set-header x-flotilla-fail-static 1 if { srv_name,map_str(${paths.failStaticMap},0) -m str 1 }`,
  );
  for (const srv of b.servers) lines.push(serverLine(srv));
  return lines.join('\n');
}

/** The whole configuration file. */
export function renderConfig(
  listen: ListenSpec,
  backends: BackendSpec[],
  paths: HaproxyPaths,
): string {
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  return `# Generated by Flotilla (src/data-plane/haproxy/config.ts); rewritten on every reload.
global
  nbthread ${listen.threads}
  # Below the usual 20000-descriptor limit (HAProxy needs two per connection).
  maxconn 8000
  stats socket ${paths.adminSocket} mode 600 level admin expose-fd listeners
  stats timeout 2m
  # Old workers after a reload finish their requests, but not forever.
  hard-stop-after 5m
  log stderr format raw local0 warning
  # No LRU cache of pattern matches: paths differ per request, so it only adds a hash, a
  # lookup and an insert to every list match (path ACLs).
  tune.pattern.cache-size 0

defaults
  mode http
  log global
  option dontlognull
  option http-keep-alive
  # Stream tokens as they come: no MSG_MORE/Nagle wait on small writes (SSE first byte).
  option http-no-delay
  option abortonclose
  option forwardfor
  timeout connect 2s
  timeout client 5m
  timeout http-request 30s
  timeout http-keep-alive 65s
  timeout server 60s
  timeout queue 30s
  http-error status 400 content-type application/json string ${errorJson('bad_request', 'bad request')}
  http-error status 408 content-type application/json string ${errorJson('request_timeout', 'request not received in time')}
  http-error status 502 content-type application/json string ${errorJson('upstream_error', 'the replica failed to answer')}
  http-error status 503 content-type application/json hdr retry-after 1 string ${errorJson('overloaded', 'no replica could take the request in time')}
  http-error status 504 content-type application/json string ${errorJson('upstream_timeout', 'the replica did not answer within request_timeout_s')}

frontend flotilla
  bind ${host}:${listen.port}
  # No traffic log: HAProxy would build a log line per request (then drop it: traffic logs are
  # at level info, the global log takes warnings); backends still log server alerts.
  no log
  # A dot-dot segment (also percent-encoded) is refused: HAProxy cannot resolve it within the
  # deployment's prefix as the own proxy does, and must never let it climb out of it. The
  # substring test spares the decoding and the regex to paths without a dot pair.
  http-request return status 400 content-type application/json string ${errorJson('bad_request', 'path holds a dot-dot segment')} if { path -m sub -i .. %2e } { path,url_dec -m reg '(^|/)\\.\\.(/|$)' }
  http-request set-header x-forwarded-proto http
  http-request set-header x-forwarded-host %[req.hdr(host)]
  # The first path segment names the backend; each backend strips it (set-path).
  use_backend %[path,field(2,/),url_dec,map_str(${paths.backendsMap})]
  default_backend ${NOT_FOUND_BACKEND}

backend ${NOT_FOUND_BACKEND}
  # /health, /ready and /metrics are answered here rather than tested in the frontend for every
  # request (about 1,800 instructions): no deployment has those names (RESERVED_NAMES).
  http-request return status 200 content-type application/json string '{"status":"ok","data_plane":"haproxy"}' if { path /health /ready }
  http-request use-service prometheus-exporter if { path /metrics }
  http-request return status 404 content-type application/json string ${errorJson('not_found', 'no deployment or endpoint has that name')}

${backends.map((b) => backendSection(b, paths)).join('\n\n')}
`;
}

/** The three map files' contents, as HAProxy reads them at (re)start. */
export function renderMaps(backends: BackendSpec[]): {
  backends: string;
  replicas: string;
  failStatic: string;
} {
  const lines = (pairs: [string, string][]) => pairs.map(([k, v]) => `${k} ${v}\n`).join('');
  const servers = backends.flatMap((b) => b.servers);
  return {
    backends: lines(backends.map((b) => [b.deploymentName, b.name])),
    replicas: lines(servers.map((s) => [s.name, mapValue(s.replicaId)])),
    failStatic: lines(servers.map((s) => [s.name, s.failStatic ? '1' : '0'])),
  };
}

/** Map values end at the line; spaces inside are kept by HAProxy but not newlines. */
export function mapValue(v: string): string {
  return v.replace(/[\r\n]/g, '_');
}
