/**
 * The embedded API: `createFlotilla(options)` runs Flotilla inside your process, with the
 * same behaviour as the HTTP API (which is a thin layer over this object).
 *
 * Composition: store (PostgreSQL or embedded PGlite) -> backend (processes) -> health store
 * (Redis or in-memory) -> runtime (actors) -> prober and proxy (in-process by default).
 */

import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { routeActorId } from '../machines/deployment.ts';
import type { ReplicaBackend } from './backends/backend.ts';
import { createProcessBackend } from './backends/process-backend.ts';
import { createDataPlane, type DataPlaneKind } from './data-plane/create-data-plane.ts';
import type { ConnectionTimeouts } from './domain/connection-timeouts.ts';
import {
  type DeploymentRequest,
  type DeploymentUpdate,
  deploymentRequestSchema,
  deploymentUpdateSchema,
  endpointRequestSchema,
  mergeUpdateRequest,
  parseIdOrName,
  parseName,
  revisionSourceOf,
  scaleRequestSchema,
  scalingGroupSchema,
} from './domain/deployment-request.ts';
import { assertEndpointNameFree } from './domain/endpoint-names.ts';
import { endpointNotFound, replicaNotInDeployment } from './domain/errors.ts';
import type { HealthRecord } from './domain/health.ts';
import { redactRevisionAndSession } from './domain/redaction.ts';
import { assertDeploymentReplicaBounds, requestedReplicaBounds } from './domain/replica-bounds.ts';
import type { ModelRevisionSpec } from './domain/revision.ts';
import { DEFAULT_ROUTING, type RoutingTable } from './domain/routing.ts';
import type { ResourceSlots } from './domain/session.ts';
import { parseOrThrow } from './domain/validation.ts';
import { createTraefikPublisher, type EtcdFence } from './etcd/traefik-publisher.ts';
import type { HealthStore } from './health/health-store.ts';
import { withLocalResults } from './health/local-first-health-store.ts';
import { createMemoryHealthStore } from './health/memory-health-store.ts';
import { createProber, type Prober } from './health/prober.ts';
import { createRedisHealthStore } from './health/redis-health-store.ts';
import type { FlotillaProxy as DataPlane } from './proxy/proxy-server.ts';
import {
  createStaticTableSource,
  publishRoutingTable,
  type StaticTableSource,
} from './proxy/routing-table-source.ts';
import { createProxyWorkers, type ProxyWorkers } from './proxy/workers.ts';
import { generateRevision } from './revision/index.ts';
import { startActivationListener } from './runtime/activation-listener.ts';
import { createClusterProxies } from './runtime/cluster-proxies.ts';
import type { RuntimeConfig } from './runtime/config.ts';
import { previousReplicaIds } from './runtime/crash-loop.ts';
import {
  type ChangeEvent,
  type DeploymentView,
  Runtime,
  type RuntimeLogger,
} from './runtime/runtime.ts';
import type { RuntimeDeps } from './runtime/runtime-deps.ts';
import { type LoadCounters, startLoadCounters } from './scaling/load-counters.ts';
import { createResourceMetrics } from './scaling/resource-metrics.ts';
import { generateSession } from './session-generators/index.ts';
import { createEventOutbox } from './store/event-outbox.ts';
import {
  type EndpointRecord,
  openStore,
  type ScalingGroup,
  type Store,
  type TransitionRow,
} from './store/store.ts';

export type { DeploymentRequest, DeploymentUpdate } from './domain/deployment-request.ts';
export {
  deploymentNotFound,
  endpointNotFound,
  FlotillaError,
  invalidState,
  validationError,
} from './domain/errors.ts';
export { redactEnviron } from './domain/redaction.ts';
export type { ChangeEvent, DeploymentView } from './runtime/runtime.ts';

export interface FlotillaOptions {
  /** PostgreSQL; without it an embedded PGlite under `dataDir`. */
  databaseUrl?: string | undefined;
  /**
   * For tests and embedders: an open, migrated store of your own instead of `databaseUrl` or
   * the embedded one (e.g. `createStore(await createEmbeddedExecutor(null))`, in memory).
   * Closed by `close()`, like `backend`.
   */
  store?: Store | undefined;
  /** Redis for health data and the routing table; without it an in-process health store. */
  redisUrl?: string | undefined;
  /** Key prefix in Redis. Default `flotilla:`. */
  redisKeyPrefix?: string | undefined;
  /**
   * etcd: every routing table is also published there in Traefik's KV layout (root key
   * `<etcdPrefix>traefik`), a full replace per deployment (src/etcd/traefik-publisher.ts).
   */
  etcdEndpoints?: string[] | undefined;
  /** Prefix of every etcd key Flotilla writes. Default none (Traefik root key `traefik`). */
  etcdPrefix?: string | undefined;
  /** The coordinator's leadership (src/etcd/leader-election.ts): etcd writes require it. */
  etcdFence?: EtcdFence | undefined;
  /** Data directory (embedded database, replica logs and state). Default `./.flotilla`. */
  dataDir?: string | undefined;
  /** Folders a deployment's model_path must stay inside. Default: the current directory. */
  modelRoots?: string[] | undefined;
  /** Node capacity for replicas; defaults to what the machine has, gpu 0. */
  capacity?: Partial<ResourceSlots> | undefined;
  /** Keep replicas running when closed (they are adopted at the next start). */
  keepReplicas?: boolean | undefined;
  /** Run the readiness prober in this process. Default true. */
  prober?: boolean | undefined;
  /** ROUTE_HEALTH_TTL_SEC. Default 120. */
  routeHealthTtlS?: number | undefined;
  /** Run the data plane in this process; `false` for none. Default: on 127.0.0.1, any port. */
  proxy?:
    | false
    | {
        host?: string | undefined;
        port?: number | undefined;
        /** Limits on client connections (README "Connection timeouts"); own proxy only. */
        timeouts?: Partial<ConnectionTimeouts> | undefined;
        /** `own` (default) or `haproxy` (README "HAProxy data plane"). */
        dataPlane?: DataPlaneKind | undefined;
        /** Where the data plane logs (HAProxy's own lines too); default silent. */
        logger?: Logger | undefined;
        /**
         * Proxy processes sharing the port (README "Proxy workers"); 1 or absent: the proxy
         * runs in this process.
         */
        workers?: number | undefined;
        /** pino level of the workers' logs (with workers > 1). Default `info`. */
        workerLogLevel?: string | undefined;
      }
    | undefined;
  runtime?: Partial<RuntimeConfig> | undefined;
  /** For tests and embedders: a backend of your own instead of the process backend. */
  backend?: ReplicaBackend | undefined;
  logger?: RuntimeLogger | undefined;
  /** Observes each snapshot flush (duration ms, actor writes): the write-latency metric. */
  observeFlush?: ((ms: number, writes: number) => void) | undefined;
  /** Called for every readiness check result the in-process prober records (metrics). */
  onHealthCheck?: ((record: HealthRecord) => void) | undefined;
  /** Per-replica cpu/memory utilization for the autoscaler (RuntimeDeps.resourceMetrics). */
  resourceMetrics?: RuntimeDeps['resourceMetrics'];
}

export interface ReadyState {
  ready: boolean;
  /** What is not ready yet, one line each. */
  missing: string[];
  /**
   * What needs an operator without making the process unready, one line each: deployments
   * quarantined at restore (their snapshot was rejected; everything else is served).
   */
  warnings?: string[];
}

export interface Flotilla {
  deploy(request: DeploymentRequest): Promise<DeploymentView>;
  get(idOrName: string): Promise<DeploymentView>;
  list(opts?: { includeDeleted?: boolean }): Promise<DeploymentView[]>;
  update(idOrName: string, update: DeploymentUpdate): Promise<DeploymentView>;
  scale(idOrName: string, replicas: number): Promise<DeploymentView>;
  destroy(idOrName: string): Promise<DeploymentView>;
  events(
    idOrName: string,
    page?: { after?: number; limit?: number },
  ): Promise<{ items: TransitionRow[]; next: number | null }>;
  /** Every actor transition as it happens. Returns unsubscribe. */
  subscribe(listener: (e: ChangeEvent) => void): () => void;
  /** Merge and validate a request with no side effects. */
  previewRevision(request: DeploymentRequest): Promise<{
    revision: ModelRevisionSpec;
    session: ReturnType<typeof generateSession>;
    warnings: string[];
  }>;
  getScalingGroup(name: string): Promise<ScalingGroup>;
  putScalingGroup(name: string, body: unknown): Promise<ScalingGroup>;
  listEndpoints(): Promise<EndpointRecord[]>;
  getEndpoint(name: string): Promise<EndpointRecord>;
  /** A new endpoint: refuses a name an endpoint or a live deployment has (409). */
  createEndpoint(body: unknown): Promise<EndpointRecord>;
  /** Creates or replaces an endpoint: refuses a live deployment's name (409). */
  putEndpoint(body: unknown): Promise<EndpointRecord>;
  deleteEndpoint(name: string): Promise<void>;
  /** `previous`: the output of replicas that have exited (PREVIOUS_LOGS_KEPT per deployment). */
  logs(
    idOrName: string,
    opts?: { replica?: string; tailBytes?: number; previous?: boolean },
  ): Promise<string>;
  routingTable(): RoutingTable;
  ready(): Promise<ReadyState>;
  /** The data plane's base URL, when it runs in this process. */
  readonly proxyUrl: string | null;
  readonly proxy: DataPlane | null;
  readonly runtime: Runtime;
  readonly store: Store;
  close(): Promise<void>;
}

export async function createFlotilla(options: FlotillaOptions = {}): Promise<Flotilla> {
  const dataDir = resolve(options.dataDir ?? '.flotilla');
  const modelRoots = (options.modelRoots ?? [process.cwd()]).map((r) => resolve(r));
  const prefix = options.redisKeyPrefix ?? 'flotilla:';
  /** Set when the start itself fails: the replicas are then left running (see the runtime closer). */
  let startFailed = false;
  const closers: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const c of closers.reverse()) {
      // One part failing to close must not keep the others open; say which failed.
      await c().catch((err: unknown) =>
        options.logger?.warn({ err }, 'closing a part of flotilla failed'),
      );
    }
  };
  try {
    const store = options.store ?? (await openStore({ databaseUrl: options.databaseUrl, dataDir }));
    closers.push(() => store.close());
    const backend =
      options.backend ?? (await createProcessBackend({ dataDir, capacity: options.capacity }));
    const shared = options.redisUrl
      ? createRedisHealthStore({ url: options.redisUrl, keyPrefix: prefix })
      : null;
    // With the prober in this process, its results reach the classifier and the proxy here
    // without a Redis round trip, and keep reaching them while Redis is down.
    const health: HealthStore = !shared
      ? createMemoryHealthStore()
      : options.prober !== false
        ? withLocalResults(shared)
        : shared;
    closers.push(() => health.close());
    // The prober writes through this view, so every check result can be counted cheaply.
    const onCheck = options.onHealthCheck;
    const proberStore: HealthStore = onCheck
      ? {
          write(record, ttlS) {
            onCheck(record);
            return health.write(record, ttlS);
          },
          readMany: (ids) => health.readMany(ids),
          publishChange: (record) => health.publishChange(record),
          subscribe: (listener) => health.subscribe(listener),
          heartbeat: (id, ttlS) => health.heartbeat(id, ttlS),
          members: () => health.members(),
          leave: (id) => health.leave(id),
          ping: () => health.ping(),
          close: () => health.close(),
        }
      : health;

    // Proxies in other processes report through Redis (src/proxy/proxy-report.ts): drains
    // wait for them, scale to zero reads their last requests, the autoscaler their load.
    const cluster = options.redisUrl
      ? createClusterProxies({ url: options.redisUrl, keyPrefix: prefix, logger: options.logger })
      : null;
    if (cluster) closers.push(() => cluster.close());
    let proxy: DataPlane | null = null;
    // cpu and memory of the replicas an autoscaling policy asks about, sampled on this node.
    let resourceMetrics = options.resourceMetrics;
    if (!resourceMetrics) {
      const sampler = createResourceMetrics({ backend, log: options.logger });
      closers.push(async () => sampler.close());
      resourceMetrics = sampler;
    }
    let localLoad: LoadCounters | null = null;
    // With `--proxy-workers N`, each worker reports its own load (src/proxy/workers.ts).
    let workerProxies: ProxyWorkers | null = null;
    const runtime: Runtime = new Runtime({
      store,
      backend,
      health,
      config: options.runtime,
      logger: options.logger,
      inflight: (routeId) => proxy?.inflight(routeId) ?? 0,
      remoteDrained: cluster ? (id, signal) => cluster.waitDrained(id, signal) : undefined,
      // Autoscaling on the load of every proxy: this process's read directly, the others'
      // from their reports in Redis (README "Autoscaling").
      loadReports: async () => {
        const [local, remote] = await Promise.all([
          localLoad ? localLoad.report() : null,
          cluster ? cluster.loadReports() : [],
        ]);
        const workers = workerProxies?.loadReports() ?? [];
        return local ? [local, ...workers, ...remote] : [...workers, ...remote];
      },
      routeInflight: async () => {
        const counts = new Map<string, number>();
        const add = (routeId: string, n: number) =>
          counts.set(routeId, (counts.get(routeId) ?? 0) + n);
        if (proxy) {
          for (const d of runtime.routingTable().deployments) {
            for (const r of d.routes) add(r.routeId, proxy.inflight(r.routeId));
          }
        }
        for (const report of (await cluster?.reports().catch(() => null))?.values() ?? []) {
          for (const [routeId, n] of report.counts) add(routeId, n);
        }
        return counts;
      },
      resourceMetrics,
      // Scale to zero's idle signal: the last request per deployment at this process's proxy
      // and at every proxy reporting to Redis. A failed read throws (the pass is skipped):
      // not knowing is not idle.
      lastRequests:
        options.proxy !== false || cluster
          ? async () => {
              const out = new Map(proxy?.lastRequests() ?? []);
              if (cluster) {
                for (const [id, at] of await cluster.lastRequests()) {
                  if (at > (out.get(id) ?? 0)) out.set(id, at);
                }
              }
              return out;
            }
          : undefined,
      observeFlush: options.observeFlush,
    });
    // A start that fails (e.g. PostgreSQL starved during restore) leaves the replicas it adopted
    // running for the next start to adopt again: stopping them would start each id twice.
    closers.push(() => runtime.close({ stopReplicas: !options.keepReplicas && !startFailed }));
    // Separate proxies ask for activations (scale to zero) through Redis.
    if (options.redisUrl) {
      const listener = await startActivationListener({
        url: options.redisUrl,
        keyPrefix: prefix,
        activate: (id) => runtime.activate(id),
        logger: options.logger,
      });
      closers.push(() => listener.close());
    }
    await runtime.start();

    let tableSource: StaticTableSource | null = null;
    if (options.proxy !== false) {
      tableSource = createStaticTableSource(runtime.routingTable());
      const src = tableSource;
      const unsub = runtime.onRoutingTable((t) => src.set(t));
      const workers = options.proxy?.workers ?? 1;
      const activation = { request: (id: string) => runtime.activate(id) };
      workerProxies =
        workers > 1 && options.proxy?.dataPlane !== 'haproxy'
          ? await createProxyWorkers({
              source: tableSource,
              count: workers,
              host: options.proxy?.host,
              port: options.proxy?.port,
              timeouts: options.proxy?.timeouts,
              logLevel: options.proxy?.workerLogLevel,
              activation,
            })
          : null;
      proxy =
        workerProxies ??
        (await createDataPlane({
          kind: options.proxy?.dataPlane,
          logger: options.proxy?.logger,
          source: tableSource,
          host: options.proxy?.host ?? '127.0.0.1',
          port: options.proxy?.port ?? 0,
          ...(options.proxy?.timeouts ? { timeouts: options.proxy.timeouts } : {}),
          activation,
        }));
      const p = proxy;
      if (!workerProxies) {
        const counters = startLoadCounters({
          source: {
            deployments: () => runtime.routingTable().deployments,
            status: (name) => p.status(name),
            metrics: p.metrics,
          },
          proxyId: 'local',
        });
        localLoad = counters;
        closers.push(async () => counters.stop());
      }
      const proxyEvents = createEventOutbox({
        write: (events) => store.recordEvents(events),
        ...(options.logger ? { logger: options.logger } : {}),
      });
      // Passive outlier ejections go into the deployment's history (GET .../events, status).
      const unsubEvents = p.onEvent((e) => {
        const route = runtime
          .routingTable()
          .deployments.find((d) => d.deploymentId === e.deploymentId)
          ?.routes.find((r) => r.routeId === e.routeId);
        const reason =
          e.type === 'outlier.ejected'
            ? `ejected by the proxy for ${e.ejectionMs} ms after ${e.consecutiveFailures} consecutive failures (${e.reason})`
            : 'back in the proxy rotation';
        options.logger?.warn({ deployment: e.deployment, route: e.routeId, event: e.type }, reason);
        // Queued, not dropped, while the store is away; written in order when it returns.
        proxyEvents.add({
          actorId: routeActorId(e.routeId),
          kind: 'route',
          deploymentId: e.deploymentId,
          state: route?.state ?? 'TERMINATED',
          event: e.type,
          reason,
          at: new Date(e.at),
        });
      });
      closers.push(async () => {
        unsubEvents();
        proxyEvents.close();
        unsub();
        await p.close();
        await src.close();
      });
    }
    // Proxies in other processes follow the same table through Redis.
    if (options.redisUrl) {
      const redis = new Redis(options.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
      // Without an 'error' listener ioredis prints a stack trace to stderr on every retry
      // (the logs stop being JSON); log each outage once, and its end.
      let redisDown = false;
      redis.on('error', (err: unknown) => {
        if (redisDown) return;
        redisDown = true;
        options.logger?.warn({ err }, 'Redis (routing table publisher) unreachable; retrying');
      });
      redis.on('ready', () => {
        if (!redisDown) return;
        redisDown = false;
        options.logger?.info({}, 'Redis (routing table publisher) reachable again');
      });
      await redis.connect();
      const publish = (t: RoutingTable) =>
        publishRoutingTable(redis, prefix, t).catch((err: unknown) =>
          options.logger?.warn({ err }, 'routing table publish failed'),
        );
      void publish(runtime.routingTable());
      const unsub = runtime.onRoutingTable((t) => void publish(t));
      closers.push(async () => {
        unsub();
        redis.disconnect();
      });
    }

    // An external Traefik follows the same table through etcd.
    if (options.etcdEndpoints?.length) {
      const etcdPrefix = options.etcdPrefix ?? '';
      const etcd = new Etcd3({ hosts: options.etcdEndpoints });
      closers.push(async () => etcd.close());
      const publisher = createTraefikPublisher({
        client: etcd,
        rootKey: `${etcdPrefix}traefik`,
        metaPrefix: `${etcdPrefix}flotilla/traefik-versions/`,
        current: () => runtime.routingTable(),
        logger: options.logger,
        fence: options.etcdFence,
      });
      // Safe to drop: the publisher logs a failed write and retries it in the background
      // until it succeeds or close() (src/etcd/traefik-publisher.ts), and each later publish
      // re-reads current(), so nothing is lost by not awaiting the failure here.
      const publish = (t: RoutingTable) => publisher.publish(t).catch(() => {});
      void publish(runtime.routingTable());
      const unsub = runtime.onRoutingTable((t) => void publish(t));
      closers.push(async () => {
        unsub();
        await publisher.close();
      });
    }

    let prober: Prober | null = null;
    if (options.prober !== false) {
      prober = createProber({
        store: proberStore,
        proberId: `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`,
        targets: () => runtime.probeTargets(),
        ttlS: options.routeHealthTtlS,
      });
      prober.start();
      const p = prober;
      closers.push(() => p.stop());
    }

    const toRevision = (req: Record<string, unknown>, variant: string) =>
      generateRevision(revisionSourceOf(req, variant), { modelRoots });

    const saveEndpoint = async (body: unknown, mode: 'create' | 'replace') => {
      const e = parseOrThrow(endpointRequestSchema, body);
      assertEndpointNameFree(e.name, {
        liveDeployments: (await runtime.list()).map((d) => d.name),
        endpoints: mode === 'create' ? (await store.listEndpoints()).map((x) => x.name) : [],
        mode,
      });
      const rec = await store.putEndpoint({ name: e.name, backends: e.backends });
      await runtime.reloadEndpoints();
      return rec;
    };

    const flotilla: Flotilla = {
      proxyUrl: proxy?.url ?? null,
      proxy,
      runtime,
      store,
      async deploy(request) {
        const req = parseOrThrow(deploymentRequestSchema, request);
        const bounds = requestedReplicaBounds(req);
        assertDeploymentReplicaBounds(bounds);
        const { revision, declared } = await toRevision(
          req as Record<string, unknown>,
          req.runtime_variant,
        );
        return redactRevisionAndSession(
          await runtime.createDeployment({
            name: req.name,
            runtime_variant: revision.runtime_variant,
            request,
            revision,
            declared_resources: declared,
            replicas: bounds.replicas,
            min_replicas: bounds.min_replicas,
            max_replicas: bounds.max_replicas,
            routing: { ...DEFAULT_ROUTING, ...(req.routing ?? {}) },
            admission: req.admission,
            scaling_group: req.scaling_group,
            scaling_policy: req.scaling_policy,
          }),
        );
      },
      get: async (idOrName) => redactRevisionAndSession(await runtime.get(parseIdOrName(idOrName))),
      list: async (opts) => (await runtime.list(opts)).map(redactRevisionAndSession),
      async update(idOrName, update) {
        const id = parseIdOrName(idOrName);
        const req = parseOrThrow(deploymentUpdateSchema, update);
        const current = await runtime.get(id);
        const prev =
          ((await store.getDeployment(current.id))?.spec as { request?: Record<string, unknown> })
            ?.request ?? {};
        const merged = mergeUpdateRequest(prev, update as object, req);
        const minPatch = req.min_replicas ?? req.scaling_policy?.min_replicas;
        const maxPatch = req.max_replicas ?? req.scaling_policy?.max_replicas;
        const { revision, declared } = await toRevision(
          merged,
          (merged.runtime_variant as string) ?? current.runtime_variant,
        );
        return redactRevisionAndSession(
          await runtime.update(id, {
            request: merged,
            revision,
            declared_resources: declared,
            // As at create: the policy's bounds stand in for absent top-level ones.
            ...(minPatch !== undefined ? { min_replicas: minPatch } : {}),
            ...(maxPatch !== undefined ? { max_replicas: maxPatch } : {}),
            ...(req.scaling_policy !== undefined ? { scaling_policy: req.scaling_policy } : {}),
            ...(req.routing ? { routing: { ...current.routing, ...req.routing } } : {}),
            ...(req.admission ? { admission: { ...current.admission, ...req.admission } } : {}),
          }),
        );
      },
      async scale(idOrName, replicas) {
        const id = parseIdOrName(idOrName);
        const body = parseOrThrow(scaleRequestSchema, { replicas });
        // The bounds (min_replicas..max_replicas) are the runtime's to check: it holds them.
        return redactRevisionAndSession(await runtime.scale(id, body.replicas));
      },
      destroy: async (idOrName) =>
        redactRevisionAndSession(await runtime.destroy(parseIdOrName(idOrName))),
      async events(idOrName, page = {}) {
        const d = await runtime.get(parseIdOrName(idOrName));
        return store.history({ deploymentId: d.id, after: page.after, limit: page.limit });
      },
      subscribe: (listener) => runtime.onChange(listener),
      async previewRevision(request) {
        const req = parseOrThrow(deploymentRequestSchema, request);
        const { revision, warnings } = await toRevision(
          req as Record<string, unknown>,
          req.runtime_variant,
        );
        return { revision, session: generateSession(revision), warnings };
      },
      getScalingGroup: async (name) => store.getScalingGroup(parseName(name)),
      async putScalingGroup(name, body) {
        const groupName = parseName(name);
        const g = parseOrThrow(scalingGroupSchema, body);
        const current = await store.getScalingGroup(groupName);
        return store.putScalingGroup({
          name: groupName,
          route_cleanup_target_statuses:
            g.route_cleanup_target_statuses ?? current.route_cleanup_target_statuses,
          settings: g.settings ?? current.settings,
        });
      },
      listEndpoints: () => store.listEndpoints(),
      async getEndpoint(name) {
        const e = await store.getEndpoint(parseName(name));
        if (!e) throw endpointNotFound(name);
        return e;
      },
      createEndpoint: (body) => saveEndpoint(body, 'create'),
      putEndpoint: (body) => saveEndpoint(body, 'replace'),
      async deleteEndpoint(name) {
        if (!(await store.deleteEndpoint(parseName(name)))) throw endpointNotFound(name);
        await runtime.reloadEndpoints();
      },
      async logs(idOrName, opts = {}) {
        const d = await runtime.get(parseIdOrName(idOrName));
        const pool = opts.previous
          ? (await previousReplicaIds(store, d.id)).kept
          : d.replicas.map((r) => r.id);
        const ids = opts.replica ? [opts.replica] : pool;
        if (opts.replica && !pool.includes(opts.replica)) {
          throw replicaNotInDeployment(opts.replica, d.name);
        }
        const parts = await Promise.all(
          ids.map(async (id) => {
            const text = await backend.logs(id, { tailBytes: opts.tailBytes ?? 64 * 1024 });
            return ids.length > 1
              ? text
                  .split('\n')
                  .filter(Boolean)
                  .map((l) => `[${id}] ${l}`)
                  .join('\n')
              : text;
          }),
        );
        return parts.filter(Boolean).join('\n');
      },
      routingTable: () => runtime.routingTable(),
      async ready() {
        const missing: string[] = [];
        if (runtime.failure) missing.push(runtime.failure);
        else if (!runtime.ready) missing.push('actors not restored yet');
        // Both at once: each answers within its own short timeout, so /ready does too.
        const [storeUp, healthUp] = await Promise.all([store.ping(), health.ping()]);
        if (!storeUp) missing.push(`database (${store.kind}) not answering`);
        const paused = runtime.storePause.describe();
        if (paused) missing.push(paused);
        if (!healthUp) missing.push('health store not answering');
        const warnings = runtime.quarantine.warnings();
        return { ready: missing.length === 0, missing, ...(warnings.length ? { warnings } : {}) };
      },
      close: closeAll,
    };
    return flotilla;
  } catch (err) {
    startFailed = true;
    await closeAll();
    throw err;
  }
}
