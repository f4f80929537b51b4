/**
 * The proxy's live view of the routing table: what each name resolves to, which replicas
 * can serve, and the state that must survive table updates (in-flight counts, balancer
 * position, admission queue, outlier records, pooled connections). A table update is applied
 * in place, keyed by deployment id and route id, so nothing in flight is lost or double
 * counted when the table changes under it.
 */
import { Pool } from 'undici';
import type {
  BalancingStrategy,
  DeploymentRoutes,
  EndpointRoutes,
  RouteEntry,
  RouteState,
  RoutingConfig,
  RoutingTable,
} from '../domain/routing.ts';
import { changeOf, type RoutingTableChange } from '../domain/routing-change.ts';
import { AdaptiveLimit } from './adaptive-limit.ts';
import {
  type AdmissionConfig,
  AdmissionController,
  type AdmissionLevel,
  resolveAdmissionConfig,
  type WorkerShare,
} from './admission.ts';
import { type Balancer, type BalancerTarget, createBalancer } from './balancer.ts';
import type { OutlierDetector, OutlierSubject } from './outlier-detector.ts';
import type { DeploymentMetrics, ProxyMetrics } from './proxy-metrics.ts';
import { SmoothWeightedBalancer } from './weighted.ts';

const POOL_OPTIONS: Pool.Options = {
  // Admission control bounds concurrency per replica; this is only a safety cap on sockets.
  connections: 1024,
  pipelining: 1,
  keepAliveTimeout: 30_000,
  connect: { timeout: 5_000 },
};

/** One route of a deployment, as this proxy sees it: a replica it may forward to. */
export class Upstream implements BalancerTarget, OutlierSubject {
  readonly routeId: string;
  readonly url: string;
  /** Scheme, host and port of `url`. */
  readonly origin: string;
  /** Path of `url` without a trailing slash ('' for none); prefixed to forwarded paths. */
  readonly basePath: string;
  replicaId: string;
  weight: number;
  state: RouteState;
  inflight = 0;
  /** Left the table: its pool closes when the last in-flight request ends. */
  retired = false;
  failures = 0;
  ejected = false;
  ejections = 0;
  probation = false;
  ejectTimer: NodeJS.Timeout | undefined = undefined;
  /** This replica's own limit in adaptive admission mode; undefined in fixed mode. */
  adaptive: AdaptiveLimit | undefined = undefined;
  private pool: Pool | undefined;

  constructor(
    entry: RouteEntry,
    readonly deployment: ProxiedDeployment,
    private readonly onIdle: (u: Upstream) => void,
  ) {
    this.routeId = entry.routeId;
    this.url = entry.url;
    const u = new URL(entry.url);
    this.origin = u.origin;
    this.basePath = u.pathname.replace(/\/+$/, '');
    this.replicaId = entry.replicaId;
    this.weight = entry.weight;
    this.state = entry.state;
  }

  /** The keep-alive connection pool to this replica, created on first use. */
  dispatcher(): Pool {
    this.pool ??= new Pool(this.origin, POOL_OPTIONS);
    return this.pool;
  }

  /** A request to this replica ended (whatever the outcome). */
  release(): void {
    this.inflight--;
    if (this.retired && this.inflight === 0) this.onIdle(this);
  }

  /** Closes pooled connections; in-flight requests are given `graceMs`, then cut. */
  async close(graceMs = 0): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    if (!pool) return;
    // Closing connections to a replica that is going away: an error here has no one to tell
    // and nothing to retry (the pool is dropped either way).
    if (graceMs <= 0) {
      await pool.destroy().catch(() => {});
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      pool.close().catch(() => {}),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (!pool.destroyed) await pool.destroy().catch(() => {});
  }
}

/** A deployment as the proxy routes it. */
export class ProxiedDeployment {
  readonly kind = 'deployment' as const;
  readonly id: string;
  name: string;
  routing: RoutingConfig;
  strategy: BalancingStrategy;
  balancer: Balancer<Upstream>;
  readonly admission: AdmissionController;
  /** Every non-TERMINATED route of the deployment in the current table. */
  routes: Upstream[] = [];
  /** Routes that may get new requests: the HEALTHY ones, else the DEGRADED ones (fail static). */
  targets: Upstream[] = [];
  /** `targets` are DEGRADED routes serving because no route is HEALTHY. */
  failStatic = false;
  /** Gone from the table; kept only by requests still using it. */
  removed = false;
  /** Scales to zero: with no servable replica, requests wait for an activation (activation.ts). */
  activation: boolean;
  metrics: DeploymentMetrics;

  constructor(
    d: DeploymentRoutes,
    private readonly random: () => number,
    metrics: ProxyMetrics,
    private readonly share?: WorkerShare,
  ) {
    this.id = d.deploymentId;
    this.name = d.name;
    this.routing = d.routing;
    this.strategy = d.routing.strategy;
    this.balancer = createBalancer<Upstream>(this.strategy, random);
    this.activation = d.activation === true;
    this.metrics = metrics.forDeployment(d.name);
    this.admission = new AdmissionController(resolveAdmissionConfig(d, share), random, {
      rejected: (reason) => this.metrics.rejected(reason),
      queueTimedOut: () => this.metrics.timedOut('queue'),
    });
  }

  update(d: DeploymentRoutes, metrics: ProxyMetrics): void {
    if (d.name !== this.name) {
      metrics.forget(this.name);
      this.name = d.name;
      this.metrics = metrics.forDeployment(d.name);
    }
    this.routing = d.routing;
    this.activation = d.activation === true;
    if (d.routing.strategy !== this.strategy) {
      this.strategy = d.routing.strategy;
      this.balancer = createBalancer<Upstream>(this.strategy, this.random);
    }
    this.admission.config = resolveAdmissionConfig(d, this.share);
  }

  /**
   * Gives each route an adaptive limit in adaptive mode (kept across table updates, its
   * ceiling following the config), none in fixed mode.
   */
  syncLimits(): void {
    const cfg = this.admission.config;
    for (const u of this.routes) {
      if (cfg.mode !== 'adaptive') u.adaptive = undefined;
      else if (!u.adaptive || u.adaptive.maxLimit !== cfg.max_concurrent_requests) {
        u.adaptive = new AdaptiveLimit({
          minLimit: 1,
          maxLimit: cfg.max_concurrent_requests,
          initialLimit: cfg.initial_limit,
          random: this.random,
        });
      }
    }
  }

  /** A replica's concurrency limit now: its adaptive limit, else max_concurrent_requests. */
  limitOf(u: Upstream): number {
    return u.adaptive ? u.adaptive.limit : this.admission.config.max_concurrent_requests;
  }

  get admissionConfig(): AdmissionConfig {
    return this.admission.config;
  }

  /** Servable replicas not ejected by outlier detection. */
  availableCount(): number {
    let n = 0;
    for (const u of this.targets) if (!u.ejected) n++;
    return n;
  }

  /** Re-derives admission capacity from the servable, non-ejected replicas. */
  recomputeCapacity(): void {
    if (this.admission.config.mode !== 'adaptive') {
      this.admission.setCapacity(
        this.admission.config.max_concurrent_requests * this.availableCount(),
      );
      return;
    }
    let capacity = 0;
    for (const u of this.targets) if (!u.ejected) capacity += this.limitOf(u);
    this.admission.setCapacity(capacity);
  }

  /**
   * The replica for the next attempt: the balancer's choice among servable, non-ejected
   * replicas not yet tried by this request, preferring ones under their concurrency limit.
   */
  pick(tried: readonly Upstream[] | null): Upstream | undefined {
    this.pickTried = tried;
    this.pickLimit = this.admission.config.max_concurrent_requests;
    try {
      return (
        this.balancer.pick(this.targets, this.underLimit) ??
        this.balancer.pick(this.targets, this.untried)
      );
    } finally {
      this.pickTried = null;
    }
  }

  // The predicates of `pick`, made once per deployment instead of once per request; they read
  // the pick's arguments from these fields (balancers are synchronous, so this is safe).
  private pickTried: readonly Upstream[] | null = null;
  private pickLimit = 0;
  private readonly untried = (u: Upstream): boolean =>
    !u.ejected && (this.pickTried === null || !this.pickTried.includes(u));
  private readonly underLimit = (u: Upstream): boolean =>
    u.inflight < (u.adaptive ? u.adaptive.limit : this.pickLimit) && this.untried(u);

  /** Whether a replica not in `tried` could take an attempt now (does not move the balancer). */
  hasAlternative(tried: readonly Upstream[] | null): boolean {
    for (const u of this.targets) {
      if (!u.ejected && (tried === null || !tried.includes(u))) return true;
    }
    return false;
  }

  status(): { level: AdmissionLevel; inflight: number; queued: number; capacity: number } {
    return {
      level: this.admission.level(),
      inflight: this.admission.inflight,
      queued: this.admission.queued,
      capacity: this.admission.capacity,
    };
  }
}

/** One backend of an endpoint: a deployment (by name or id) and its share. */
export class EndpointBackendState implements BalancerTarget {
  readonly inflight = 0;
  weight: number;
  target: ProxiedDeployment | undefined;

  constructor(
    readonly deployment: string,
    weight: number,
  ) {
    this.weight = weight;
  }
}

/** An endpoint: traffic split by weight over deployments that have something to serve. */
export class EndpointState {
  readonly kind = 'endpoint' as const;
  backends: EndpointBackendState[] = [];
  private readonly balancer = new SmoothWeightedBalancer<EndpointBackendState>();

  constructor(readonly name: string) {}

  /**
   * The deployment for a request: smooth weighted round robin over the backends whose
   * deployment exists and has a servable replica; one that has none drops out and the others
   * take its share. `exclude` skips deployments this request already gave up on.
   */
  pick(exclude: readonly ProxiedDeployment[] | null): ProxiedDeployment | undefined {
    return this.balancer.pick(
      this.backends,
      (b) =>
        b.target !== undefined &&
        !b.target.removed &&
        b.target.availableCount() > 0 &&
        (exclude === null || !exclude.includes(b.target)),
    )?.target;
  }
}

/** What a first path segment resolves to. */
export type NamedTarget = ProxiedDeployment | EndpointState;

/** Hooks the state needs from the proxy around it. */
export interface RoutingStateDeps {
  random: () => number;
  metrics: ProxyMetrics;
  outliers: OutlierDetector<Upstream>;
  /** This process's part of every deployment's limits (several proxy workers). */
  share?: WorkerShare | undefined;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * The applied routing table plus the state that outlives tables. Invariants: a route id maps
 * to one Upstream while it is in the table; an Upstream that left keeps counting its in-flight
 * requests until they end, then its pool closes; older tables are ignored. A table that comes
 * with its change (`changeOf`) on top of the applied version is applied per deployment, at a
 * cost independent of the table's size; any other table is a full replace.
 */
export class RoutingState {
  version = -1;
  /** Current routes by route id. */
  private readonly upstreams = new Map<string, Upstream>();
  /** Routes that left the table and still have requests in flight. */
  private readonly retiring = new Set<Upstream>();
  private readonly deployments = new Map<string, ProxiedDeployment>();
  /** Deployments by name, in table order; the last one with a name gets it. */
  private byName = new Map<string, ProxiedDeployment[]>();
  private readonly endpoints = new Map<string, EndpointState>();

  constructor(private readonly deps: RoutingStateDeps) {}

  /** What `/{name}/…` routes to: a deployment (by name, or id) or else an endpoint. */
  lookup(name: string): NamedTarget | undefined {
    return this.deploymentNamed(name) ?? this.endpoints.get(name);
  }

  /** Applies a routing table. Tables older than the current one are ignored. */
  apply(table: RoutingTable): void {
    if (table.version < this.version) return;
    const change = changeOf(table);
    if (change && change.base === this.version && change.version === table.version) {
      this.applyChange(change, table);
      return;
    }
    this.applyFull(table);
  }

  /** A full replace: every deployment and endpoint of `table`, nothing else. */
  private applyFull(table: RoutingTable): void {
    this.version = table.version;
    const seenDeployments = new Set<string>();
    const seenRoutes = new Set<string>();
    const byName = new Map<string, ProxiedDeployment[]>();
    for (const d of table.deployments) {
      if (seenDeployments.has(d.deploymentId)) continue;
      seenDeployments.add(d.deploymentId);
      const ds = this.upsertDeployment(d, seenRoutes);
      const list = byName.get(ds.name);
      if (list) list.push(ds);
      else byName.set(ds.name, [ds]);
    }
    for (const u of [...this.upstreams.values()]) if (!seenRoutes.has(u.routeId)) this.retire(u);
    const removed: ProxiedDeployment[] = [];
    for (const ds of [...this.deployments.values()]) {
      if (!seenDeployments.has(ds.id)) removed.push(this.dropDeployment(ds));
    }
    this.byName = byName;
    this.applyEndpoints(table.endpoints ?? []);
    this.deps.metrics.setTableVersion(table.version);
    // Last, so queued requests evicted from a deployment can be rerouted by the new table.
    for (const ds of this.deployments.values()) this.refresh(ds);
    this.forgetRemoved(removed);
  }

  /** Applies one change on top of the current version: only the deployments it names. */
  private applyChange(change: RoutingTableChange, table: RoutingTable): void {
    this.version = change.version;
    let namesMoved = false;
    const touched: ProxiedDeployment[] = [];
    for (const d of change.upserted) {
      const before = this.deployments.get(d.deploymentId);
      const oldName = before?.name;
      const previous = before ? new Set(before.routes) : null;
      const ds = this.upsertDeployment(d, new Set());
      if (previous) {
        for (const u of ds.routes) previous.delete(u);
        for (const u of previous) if (!u.retired) this.retire(u);
      }
      if (oldName !== ds.name) {
        if (oldName !== undefined) this.unname(ds, oldName);
        const list = this.byName.get(ds.name);
        if (list) list.push(ds);
        else this.byName.set(ds.name, [ds]);
        namesMoved = true;
      }
      touched.push(ds);
    }
    const removed: ProxiedDeployment[] = [];
    for (const { deploymentId } of change.removed) {
      const ds = this.deployments.get(deploymentId);
      if (!ds) continue;
      for (const u of ds.routes) if (!u.retired) this.retire(u);
      this.unname(ds, ds.name);
      removed.push(this.dropDeployment(ds));
      namesMoved = true;
    }
    if (change.endpointsChanged) this.applyEndpoints(table.endpoints ?? []);
    else if (namesMoved) this.resolveEndpointTargets();
    this.deps.metrics.setTableVersion(change.version);
    for (const ds of touched) if (!ds.removed) this.refresh(ds);
    this.forgetRemoved(removed);
  }

  /** Creates or updates one deployment and its routes (route ids in `seenRoutes` are skipped). */
  private upsertDeployment(d: DeploymentRoutes, seenRoutes: Set<string>): ProxiedDeployment {
    const { random, metrics } = this.deps;
    let ds = this.deployments.get(d.deploymentId);
    if (!ds) {
      ds = new ProxiedDeployment(d, random, metrics, this.deps.share);
      this.deployments.set(d.deploymentId, ds);
    } else {
      ds.update(d, metrics);
    }
    const routes: Upstream[] = [];
    for (const r of d.routes) {
      if (r.state === 'TERMINATED' || seenRoutes.has(r.routeId)) continue;
      let u = this.upstreams.get(r.routeId);
      if (u && (u.url !== r.url || u.deployment !== ds)) {
        this.retire(u);
        u = undefined;
      }
      if (!u) {
        try {
          u = new Upstream(r, ds, (idle) => this.closeRetired(idle));
        } catch {
          this.deps.warn('route with an invalid url ignored', { routeId: r.routeId, url: r.url });
          continue;
        }
        this.upstreams.set(r.routeId, u);
      }
      u.replicaId = r.replicaId;
      u.weight = Number.isFinite(r.weight) ? r.weight : 1;
      u.state = r.state;
      seenRoutes.add(r.routeId);
      routes.push(u);
    }
    const healthy = routes.filter((u) => u.state === 'HEALTHY');
    const degraded = healthy.length === 0 ? routes.filter((u) => u.state === 'DEGRADED') : [];
    ds.routes = routes;
    ds.targets = healthy.length > 0 ? healthy : degraded;
    ds.failStatic = healthy.length === 0 && degraded.length > 0;
    ds.syncLimits();
    return ds;
  }

  private dropDeployment(ds: ProxiedDeployment): ProxiedDeployment {
    this.deployments.delete(ds.id);
    ds.removed = true;
    ds.routes = [];
    ds.targets = [];
    return ds;
  }

  private forgetRemoved(removed: ProxiedDeployment[]): void {
    for (const ds of removed) {
      ds.recomputeCapacity();
      this.deps.metrics.forget(ds.name);
    }
  }

  private unname(ds: ProxiedDeployment, name: string): void {
    const list = this.byName.get(name);
    if (!list) return;
    const rest = list.filter((x) => x !== ds);
    if (rest.length > 0) this.byName.set(name, rest);
    else this.byName.delete(name);
  }

  /** A deployment by name (the last one with it), else by id. */
  private deploymentNamed(name: string): ProxiedDeployment | undefined {
    const list = this.byName.get(name);
    return list?.[list.length - 1] ?? this.deployments.get(name);
  }

  private applyEndpoints(list: readonly EndpointRoutes[]): void {
    const seenEndpoints = new Set<string>();
    for (const e of list) {
      if (seenEndpoints.has(e.name)) continue;
      seenEndpoints.add(e.name);
      let es = this.endpoints.get(e.name);
      if (!es) {
        es = new EndpointState(e.name);
        this.endpoints.set(e.name, es);
      }
      const previous = new Map(es.backends.map((b) => [b.deployment, b]));
      es.backends = (e.backends ?? []).map((b) => {
        const kept = previous.get(b.deployment) ?? new EndpointBackendState(b.deployment, b.weight);
        kept.weight = Number.isFinite(b.weight) ? b.weight : 0;
        return kept;
      });
      if (this.deploymentNamed(e.name)) {
        this.deps.warn('endpoint name shadowed by a deployment; the deployment wins', {
          endpoint: e.name,
        });
      }
    }
    for (const name of [...this.endpoints.keys()]) {
      if (!seenEndpoints.has(name)) this.endpoints.delete(name);
    }
    this.resolveEndpointTargets();
  }

  /** Points every endpoint backend at the deployment its name resolves to now. */
  private resolveEndpointTargets(): void {
    for (const es of this.endpoints.values()) {
      for (const b of es.backends) b.target = this.deploymentNamed(b.deployment);
    }
  }

  /**
   * Recomputes a deployment's capacity. When every servable replica is ejected, ejections
   * are lifted (like Envoy's panic threshold): the replicas are all the deployment has.
   */
  refresh(ds: ProxiedDeployment): void {
    if (ds.targets.length > 0 && ds.targets.every((u) => u.ejected)) {
      for (const u of ds.targets) this.deps.outliers.restore(u);
    }
    ds.recomputeCapacity();
  }

  private retire(u: Upstream): void {
    if (this.upstreams.get(u.routeId) === u) this.upstreams.delete(u.routeId);
    u.retired = true;
    this.deps.outliers.forget(u);
    u.ejected = false;
    if (u.inflight === 0) void u.close();
    else this.retiring.add(u);
  }

  private closeRetired(u: Upstream): void {
    this.retiring.delete(u);
    void u.close();
  }

  /** Requests in flight to a route (also after it left the table, until they end). */
  inflight(routeId: string): number {
    let n = this.upstreams.get(routeId)?.inflight ?? 0;
    for (const u of this.retiring) if (u.routeId === routeId) n += u.inflight;
    return n;
  }

  /** The deployment named (or with id) `name`, if it is in the table. */
  deployment(name: string): ProxiedDeployment | undefined {
    return this.deploymentNamed(name);
  }

  allDeployments(): IterableIterator<ProxiedDeployment> {
    return this.deployments.values();
  }

  /** Every queue answered and every pool closed (proxy shutdown). */
  async close(graceMs: number): Promise<void> {
    for (const ds of this.deployments.values()) ds.admission.evictAll();
    const all = [...this.upstreams.values(), ...this.retiring];
    for (const u of all) this.deps.outliers.forget(u);
    await Promise.all(all.map((u) => u.close(graceMs)));
    this.upstreams.clear();
    this.retiring.clear();
  }
}
