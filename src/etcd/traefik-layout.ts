/**
 * The routing table in Traefik's KV layout: pure functions from a table to the etcd keys one
 * deployment or one endpoint owns. No I/O; the publisher (traefik-publisher.ts) writes them.
 *
 * Key layout, as documented for Traefik's KV providers (etcd included):
 *   https://doc.traefik.io/traefik/routing/providers/kv/
 *   https://doc.traefik.io/traefik/reference/routing-configuration/other-providers/kv/
 *   https://doc.traefik.io/traefik/middlewares/http/stripprefix/
 *
 * For deployment `D` (object name `flotilla_D`) under root key `R`:
 *   R/http/routers/flotilla_D/rule                          Path(`/D`) || PathPrefix(`/D/`)
 *   R/http/routers/flotilla_D/service                       flotilla_D
 *   R/http/routers/flotilla_D/middlewares/0                 flotilla_D
 *   R/http/middlewares/flotilla_D/stripPrefix/prefixes/0    /D
 *   R/http/services/flotilla_D/loadBalancer/servers/<n>/url the servable routes' URLs
 *     (+ `/weight` when the deployment balances by weight, `/preservePath` when a URL has a path)
 * For endpoint `E` (object name `flotilla_ep_E`):
 *   the same router and middleware, and
 *   R/http/services/flotilla_ep_E/weighted/services/<n>/name    flotilla_ep_E_<deployment>
 *   R/http/services/flotilla_ep_E/weighted/services/<n>/weight  integer weight
 *   R/http/services/flotilla_ep_E_<deployment>/loadBalancer/servers/<n>/url
 *
 * Why `Path || PathPrefix(/D/)` and not `PathPrefix(/D)`: Traefik's PathPrefix is a string
 * prefix, so `/D` would also catch `/Dx/...`; Flotilla routes by the whole first segment.
 * Why an endpoint carries its own copy of each backend's servers instead of naming the
 * deployment's service: every object an endpoint references is then written in the same
 * transaction as the endpoint, so Traefik never sees a weighted service naming a service that
 * another transaction has not written yet (or has just deleted).
 * Deployment and endpoint names are `[a-z0-9-]` (deploymentNameSchema), so `_` never occurs in
 * them and the object names above cannot collide.
 */
import type {
  DeploymentRoutes,
  EndpointRoutes,
  RouteEntry,
  RoutingTable,
} from '../domain/routing.ts';

/** What a set of keys belongs to: one deployment or one endpoint, by name. */
export interface TraefikGroup {
  kind: 'deployment' | 'endpoint';
  name: string;
}

/** A stable string for a group: `d/<name>` or `e/<name>`. */
export function groupId(g: TraefikGroup): string {
  return `${g.kind === 'deployment' ? 'd' : 'e'}/${g.name}`;
}

export function parseGroupId(id: string): TraefikGroup | null {
  const m = /^([de])\/(.+)$/.exec(id);
  if (!m) return null;
  return { kind: m[1] === 'd' ? 'deployment' : 'endpoint', name: m[2] as string };
}

export function deploymentObjectName(name: string): string {
  return `flotilla_${name}`;
}

export function endpointObjectName(name: string): string {
  return `flotilla_ep_${name}`;
}

/**
 * Routes that get traffic, exactly as the proxy chooses them: the HEALTHY ones, else the
 * DEGRADED ones (fail static); sorted by route id so the same table gives the same keys.
 */
export function servableRoutes(d: DeploymentRoutes): RouteEntry[] {
  const seen = new Set<string>();
  const valid = d.routes.filter((r) => {
    if (seen.has(r.routeId) || !isHttpUrl(r.url)) return false;
    seen.add(r.routeId);
    return true;
  });
  const healthy = valid.filter((r) => r.state === 'HEALTHY');
  const chosen = healthy.length > 0 ? healthy : valid.filter((r) => r.state === 'DEGRADED');
  return chosen.sort((a, b) => (a.routeId < b.routeId ? -1 : a.routeId > b.routeId ? 1 : 0));
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

/** Every group the table has keys or a record for. */
export function tableGroups(table: RoutingTable): TraefikGroup[] {
  const out: TraefikGroup[] = [];
  for (const d of table.deployments) out.push({ kind: 'deployment', name: d.name });
  for (const e of table.endpoints) out.push({ kind: 'endpoint', name: e.name });
  return out;
}

/**
 * The key prefixes a group owns; a write deletes them all before putting its keys. Each ends in
 * `/` or `_` so `flotilla_a` never owns `flotilla_ab`'s keys.
 */
export function groupPrefixes(root: string, g: TraefikGroup): string[] {
  if (g.kind === 'deployment') {
    const o = deploymentObjectName(g.name);
    return [
      `${root}/http/routers/${o}/`,
      `${root}/http/middlewares/${o}/`,
      `${root}/http/services/${o}/`,
    ];
  }
  const o = endpointObjectName(g.name);
  return [
    `${root}/http/routers/${o}/`,
    `${root}/http/middlewares/${o}/`,
    `${root}/http/services/${o}/`,
    `${root}/http/services/${o}_`,
  ];
}

/**
 * The keys `g` should have for `table`, or null when it should have none: a deployment gone
 * from the table or with nothing servable, an endpoint gone, shadowed by a deployment of the
 * same name (the proxy gives the deployment the path), or with no backend that can serve.
 */
export function groupKeys(
  root: string,
  table: RoutingTable,
  g: TraefikGroup,
): Map<string, string> | null {
  return g.kind === 'deployment'
    ? deploymentKeys(root, table, g.name)
    : endpointKeys(root, table, g.name);
}

/**
 * Which replica each server URL key of `g` points at (key -> replica id), or null with no keys.
 * Traefik's server objects hold only a URL, and ports are reused between deployments, so the
 * identity is kept beside the keys (in the group's version record): a checker can tell that a
 * URL under deployment A's service is A's replica and not a replica of B on a reused port.
 */
export function groupReplicaIds(
  root: string,
  table: RoutingTable,
  g: TraefikGroup,
): Record<string, string> | null {
  const ids = new Map<string, string>();
  const keys =
    g.kind === 'deployment'
      ? deploymentKeys(root, table, g.name, ids)
      : endpointKeys(root, table, g.name, ids);
  return keys
    ? Object.fromEntries([...ids].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    : null;
}

function routerKeys(root: string, object: string, name: string, out: Map<string, string>): void {
  out.set(`${root}/http/routers/${object}/rule`, `Path(\`/${name}\`) || PathPrefix(\`/${name}/\`)`);
  out.set(`${root}/http/routers/${object}/service`, object);
  out.set(`${root}/http/routers/${object}/middlewares/0`, object);
  out.set(`${root}/http/middlewares/${object}/stripPrefix/prefixes/0`, `/${name}`);
}

function serverKeys(
  root: string,
  service: string,
  routes: RouteEntry[],
  weighted: boolean,
  out: Map<string, string>,
  ids?: Map<string, string>,
): void {
  const weights = weighted ? integerWeights(routes.map((r) => r.weight)) : null;
  routes.forEach((r, i) => {
    const base = `${root}/http/services/${service}/loadBalancer/servers/${i}`;
    out.set(`${base}/url`, r.url);
    ids?.set(`${base}/url`, r.replicaId);
    if (weights) out.set(`${base}/weight`, String(weights[i]));
    // Traefik drops the server URL's path unless told to keep it (v3.3+); only written when
    // there is a path, so older Traefik versions still decode the common case.
    const path = new URL(r.url).pathname;
    if (path !== '' && path !== '/') out.set(`${base}/preservePath`, 'true');
  });
}

interface TableIndex {
  byName: Map<string, DeploymentRoutes[]>;
  byId: Map<string, DeploymentRoutes>;
  servable: Map<DeploymentRoutes, RouteEntry[]>;
}

/** Per-table lookups, built once per table (a table is immutable once published). */
const indexes = new WeakMap<RoutingTable, TableIndex>();

function indexOf(table: RoutingTable): TableIndex {
  let ix = indexes.get(table);
  if (!ix) {
    ix = { byName: new Map(), byId: new Map(), servable: new Map() };
    for (const d of table.deployments) {
      const list = ix.byName.get(d.name);
      if (list) list.push(d);
      else ix.byName.set(d.name, [d]);
      if (!ix.byId.has(d.deploymentId)) ix.byId.set(d.deploymentId, d);
      ix.servable.set(d, servableRoutes(d));
    }
    indexes.set(table, ix);
  }
  return ix;
}

function servableIn(table: RoutingTable, d: DeploymentRoutes): RouteEntry[] {
  return indexOf(table).servable.get(d) ?? servableRoutes(d);
}

/** The deployment a name resolves to, as the proxy resolves it: by name, else by id. */
function findDeployment(table: RoutingTable, ref: string): DeploymentRoutes | undefined {
  const ix = indexOf(table);
  const byName = ix.byName.get(ref);
  // Two entries with one name (a deleted one still draining and its successor): the one that
  // can serve.
  if (byName) return byName.find((d) => servableIn(table, d).length > 0) ?? byName[0];
  return ix.byId.get(ref);
}

function deploymentKeys(
  root: string,
  table: RoutingTable,
  name: string,
  ids?: Map<string, string>,
): Map<string, string> | null {
  const d = findDeployment(table, name);
  if (!d || d.name !== name) return null;
  const routes = servableIn(table, d);
  if (routes.length === 0) return null;
  const object = deploymentObjectName(name);
  const out = new Map<string, string>();
  routerKeys(root, object, name, out);
  serverKeys(root, object, routes, d.routing.strategy === 'weighted', out, ids);
  return out;
}

function endpointKeys(
  root: string,
  table: RoutingTable,
  name: string,
  ids?: Map<string, string>,
): Map<string, string> | null {
  const e: EndpointRoutes | undefined = table.endpoints.find((x) => x.name === name);
  if (!e) return null;
  if (indexOf(table).byName.has(name) || indexOf(table).byId.has(name)) return null;
  // Backends that can serve, by deployment name; two entries for one deployment add up.
  const byDeployment = new Map<string, { d: DeploymentRoutes; weight: number }>();
  for (const b of e.backends) {
    if (!Number.isFinite(b.weight) || b.weight <= 0) continue;
    const d = findDeployment(table, b.deployment);
    if (!d || servableIn(table, d).length === 0) continue;
    const prev = byDeployment.get(d.name);
    byDeployment.set(d.name, { d, weight: (prev?.weight ?? 0) + b.weight });
  }
  if (byDeployment.size === 0) return null;
  const backends = [...byDeployment.values()].sort((a, b) =>
    a.d.name < b.d.name ? -1 : a.d.name > b.d.name ? 1 : 0,
  );
  const object = endpointObjectName(name);
  const out = new Map<string, string>();
  routerKeys(root, object, name, out);
  const weights = integerWeights(backends.map((b) => b.weight));
  backends.forEach((b, i) => {
    const child = `${object}_${b.d.name}`;
    out.set(`${root}/http/services/${object}/weighted/services/${i}/name`, child);
    out.set(`${root}/http/services/${object}/weighted/services/${i}/weight`, String(weights[i]));
    serverKeys(root, child, servableIn(table, b.d), b.d.routing.strategy === 'weighted', out, ids);
  });
  return out;
}

/**
 * Traefik's weights are integers; Flotilla's may be fractional (0..1000). Integers are kept;
 * otherwise all are scaled by 1000, rounded (at least 1 when positive) and reduced by their
 * greatest common divisor, which keeps the ratios to 0.1%.
 */
export function integerWeights(weights: number[]): number[] {
  const clean = weights.map((w) => (Number.isFinite(w) && w > 0 ? w : 0));
  if (clean.every((w) => Number.isInteger(w))) return clean.map((w) => Math.max(w, 0));
  const scaled = clean.map((w) => (w > 0 ? Math.max(1, Math.round(w * 1000)) : 0));
  const g = scaled.reduce((a, b) => gcd(a, b), 0) || 1;
  return scaled.map((w) => w / g);
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
