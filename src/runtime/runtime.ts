/**
 * The actor runtime: the coordinator tree, its effects, persistence, restore and tickers.
 *
 * One deployment's flow: `createDeployment` writes the deployment + revision rows, then asks
 * the coordinator to spawn the deployment actor (under its shard). The actor's effects run
 * here (generate the session, start/stop sessions on the backend, drain routes); every
 * transition goes through the SnapshotWriter to PostgreSQL. Health results reach route and
 * replica actors straight through `system.get`, from the classification tick and from the
 * prober's change notifications. After a crash, `start` rebuilds the tree from the rows and
 * the actors re-invoke their idempotent effects.
 */
import { type Actor, type AnyActorRef, createActor } from 'xstate';
import type {
  DeploymentContext,
  DeploymentSettings,
  DeploymentState,
} from '../../machines/deployment.ts';
import { deploymentActorId, replicaActorId, routeActorId } from '../../machines/deployment.ts';
import type { ReplicaContext, ReplicaState } from '../../machines/replica.ts';
import type { CleanupStatus, RouteContext, RouteState } from '../../machines/route.ts';
import type { ReplicaBackend } from '../backends/backend.ts';
import { reservedSlots } from '../backends/capacity.ts';
import { generateSession } from '../definitions/index.ts';
import { FlotillaError, isFlotillaError } from '../domain/errors.ts';
import { newId } from '../domain/ids.ts';
import type { ModelRevisionSpec } from '../domain/revision.ts';
import type {
  AdmissionSettings,
  RouteEntry,
  RoutingConfig,
  RoutingTable,
} from '../domain/routing.ts';
import { DEFAULT_ROUTING } from '../domain/routing.ts';
import type { SessionSpec } from '../domain/session.ts';
import { classifyMany, classifyRoute, type RouteClassification } from '../health/classifier.ts';
import type { HealthStore } from '../health/health-store.ts';
import type { ProbeTarget } from '../health/prober.ts';
import { decideScale, type ScalingPolicy } from '../scaling/policy.ts';
import type { DeploymentRecord, RevisionRecord, Store } from '../store/store.ts';
import { capacityRefusal, wakeCapacityWaiters } from './capacity-wait.ts';
import { DEFAULT_RUNTIME_CONFIG, type RuntimeConfig } from './config.ts';
import { describeExit, previousReplicaIds, prunePreviousLogs } from './crash-loop.ts';
import { type DeploymentView, liveView, storedView, type ViewBase } from './deployment-view.ts';
import { type EffectPorts, type ProvidedCoordinator, provideEffects } from './provide-effects.ts';
import { Quarantine } from './quarantine.ts';
import {
  assembleCoordinatorSnapshot,
  SNAPSHOT_SCHEMA_VERSION,
  SnapshotRejected,
  validateDeploymentSnapshot,
} from './restore.ts';
import {
  recordShutdownStops,
  resumeAfterShutdown,
  type ShutdownReplica,
} from './shutdown-restart.ts';
import { type PersistedSubtree, SnapshotWriter, topState } from './snapshot-writer.ts';
import { nextBounds, sameRevision } from './update-plan.ts';

export type { DeploymentView, ReplicaView, RouteView } from './deployment-view.ts';

export interface RuntimeLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface RuntimeDeps {
  store: Store;
  backend: ReplicaBackend;
  /** Where probers write; null when nothing probes (then routes stay PROVISIONING). */
  health: HealthStore | null;
  logger?: RuntimeLogger;
  config?: Partial<RuntimeConfig>;
  /** In-flight requests per route, from the proxy; drains wait for 0. */
  inflight?: (routeId: string) => number;
  /** Observes each snapshot flush (duration ms, writes), e.g. for a latency histogram. */
  observeFlush?: (ms: number, writes: number) => void;
  /**
   * The autoscaling metric of a deployment, summed over its replicas (for `inflight`: requests
   * in flight at the proxy); null when unknown. Without it no deployment autoscales.
   */
  scalingMetric?: (deployment: { id: string; name: string }, metric: string) => number | null;
}

export interface ScalingEvent {
  deployment_id: string;
  name: string;
  from: number;
  to: number;
  reason: string;
  at: string;
}

/** What the stored deployment spec carries besides the revision request. */
export interface DeploymentOptions {
  replicas: number;
  min_replicas: number;
  max_replicas: number;
  routing: RoutingConfig;
  admission?: AdmissionSettings | undefined;
  scaling_group: string;
  scaling_policy?: unknown;
  /** resource_slots the operator declared (SessionSpec.declared); absent: all reserved. */
  declared_resources?: SessionSpec['declared'];
}

export interface CreateDeploymentCommand extends DeploymentOptions {
  name: string;
  runtime_variant: string;
  /** The request as the user sent it (secrets already redacted by the caller if wanted). */
  request: unknown;
  revision: ModelRevisionSpec;
}

export interface UpdateDeploymentCommand {
  request: unknown;
  revision: ModelRevisionSpec;
  declared_resources?: SessionSpec['declared'];
  routing?: RoutingConfig;
  admission?: AdmissionSettings;
  min_replicas?: number;
  max_replicas?: number;
  scaling_policy?: unknown;
}

export interface ChangeEvent {
  kind: 'deployment' | 'replica' | 'route';
  actor_id: string;
  deployment_id: string;
  from: string | null;
  to: string;
  reason: string | null;
  at: string;
}

interface DeploymentMeta {
  id: string;
  name: string;
  routing: RoutingConfig;
  scalingGroup: string;
  options: DeploymentOptions;
}

const LIVE_STATES: readonly string[] = [
  'PENDING',
  'PROVISIONING',
  'RUNNING',
  'ERROR',
  'DESTROYING',
];
const PROBED_ROUTE_STATES: ReadonlySet<string> = new Set([
  'PROVISIONING',
  'HEALTHY',
  'UNHEALTHY',
  'DEGRADED',
]);
const TABLE_ROUTE_STATES: ReadonlySet<string> = new Set([
  'PROVISIONING',
  'HEALTHY',
  'UNHEALTHY',
  'DEGRADED',
  'TERMINATING',
]);

const silentLogger: RuntimeLogger = { info() {}, warn() {}, error() {} };

function notFound(idOrName: string): FlotillaError {
  return new FlotillaError('not_found', `deployment "${idOrName}" not found`, {
    details: [{ path: 'id', message: `no deployment with id or name "${idOrName}"` }],
  });
}

export function optionsOf(record: DeploymentRecord): DeploymentOptions {
  const spec = (record.spec ?? {}) as Partial<DeploymentOptions> & Record<string, unknown>;
  return {
    replicas: record.target_replicas,
    min_replicas: typeof spec.min_replicas === 'number' ? spec.min_replicas : 0,
    max_replicas:
      typeof spec.max_replicas === 'number'
        ? spec.max_replicas
        : Math.max(record.target_replicas, 10),
    routing: { ...DEFAULT_ROUTING, ...((spec.routing as Partial<RoutingConfig>) ?? {}) },
    admission: (spec.admission as AdmissionSettings | undefined) ?? undefined,
    scaling_group: typeof spec.scaling_group === 'string' ? spec.scaling_group : 'default',
    scaling_policy: spec.scaling_policy,
  };
}

export class Runtime {
  private readonly config: RuntimeConfig;
  private readonly log: RuntimeLogger;
  private readonly machine: ProvidedCoordinator;
  private actor: Actor<ProvidedCoordinator> | null = null;
  readonly writer: SnapshotWriter;
  private readonly meta = new Map<string, DeploymentMeta>();
  /** revisionId -> session spec (generated from the stored revision). */
  private readonly sessions = new Map<string, SessionSpec>();
  private readonly revisions = new Map<string, RevisionRecord>();
  private readonly lastFedCheck = new Map<string, number>();
  private readonly tickers: Array<ReturnType<typeof setInterval>> = [];
  private readonly cleanups: Array<() => void | Promise<void>> = [];
  private readonly changeListeners = new Set<(e: ChangeEvent) => void>();
  private readonly tableListeners = new Set<(t: RoutingTable) => void>();
  private readonly scalingListeners = new Set<(e: ScalingEvent) => void>();
  /** Last autoscaling action per deployment (cooldown); not persisted, a restart resets it. */
  private readonly lastScaledAt = new Map<string, number>();
  private tableVersion = 0;
  private table: RoutingTable = { version: 0, deployments: [], endpoints: [] };
  private probeTargetCache: ProbeTarget[] = [];
  private probeTargetByRoute = new Map<string, ProbeTarget>();
  private endpoints: RoutingTable['endpoints'] = [];
  private publishScheduled = false;
  private classifying = false;
  private closed = false;
  ready = false;
  /** Set when the actor tree died; the process must be restarted (it restores from PostgreSQL). */
  failure: string | null = null;
  /** Every actor's state right after restore, before any effect ran. */
  restoredStates = new Map<string, string>();
  /** Deployments whose snapshot was rejected at restore (listed, deletable, on /ready). */
  readonly quarantine = new Quarantine();

  constructor(private readonly deps: RuntimeDeps) {
    this.config = { ...DEFAULT_RUNTIME_CONFIG, ...(deps.config ?? {}) };
    this.log = deps.logger ?? silentLogger;
    this.machine = provideEffects(this.effectPorts());
    this.writer = new SnapshotWriter(
      deps.store,
      { persisted: (id) => this.persistedSubtree(id) },
      {
        flushDelayMs: this.config.flushDelayMs,
        ...(deps.observeFlush ? { onFlush: deps.observeFlush } : {}),
        onError: (err) =>
          this.log.error({ err: String(err) }, 'persisting transitions failed; retrying in 1 s'),
        onConflict: (ids) =>
          this.log.error(
            { actors: ids },
            'snapshot version conflict: another coordinator wrote these actors',
          ),
      },
    );
  }

  // ---------------------------------------------------------------- lifecycle

  /** Restores every non-terminal actor from PostgreSQL, starts the tree and the tickers. */
  async start(): Promise<{ restoredDeployments: number }> {
    const { store, backend } = this.deps;
    const records = await store.listDeployments();
    for (const r of records) {
      if (LIVE_STATES.includes(r.state)) this.remember(r);
    }
    const rows = await store.loadSnapshots({ excludeStates: ['TERMINATED'] });
    this.writer.seed(rows);
    const deploymentRows: Array<{ deploymentId: string; snapshot: unknown }> = [];
    for (const row of rows) {
      if (row.kind !== 'deployment' || !this.meta.has(row.deployment_id)) continue;
      const { _v, ...snapshot } = row.snapshot as { _v?: number } & Record<string, unknown>;
      try {
        if (_v !== SNAPSHOT_SCHEMA_VERSION) {
          throw new SnapshotRejected(
            `snapshot schema ${_v}, this build reads ${SNAPSHOT_SCHEMA_VERSION}`,
          );
        }
        validateDeploymentSnapshot(snapshot);
        deploymentRows.push({ deploymentId: row.deployment_id, snapshot });
      } catch (err) {
        this.log.error(
          { deployment: row.deployment_id, err: String(err) },
          'snapshot not restorable; deployment quarantined',
        );
        this.quarantine.add({
          id: row.deployment_id,
          name: this.meta.get(row.deployment_id)?.name ?? row.deployment_id,
          reason: `snapshot not restorable: ${err instanceof Error ? err.message : String(err)}`,
          rows: rows.filter((r) => r.deployment_id === row.deployment_id),
        });
        this.meta.delete(row.deployment_id);
      }
    }
    await Promise.all(
      [...this.meta.values()].map(async (m) => {
        const rec = records.find((r) => r.id === m.id);
        if (rec?.revision_id) await this.sessionFor(rec.revision_id);
      }),
    );
    const snapshot = assembleCoordinatorSnapshot(this.config.shards, deploymentRows);
    const actor = createActor(this.machine, {
      input: { shards: this.config.shards },
      snapshot: snapshot as never,
    });
    actor.subscribe({
      // An errored root ignores every later event (xstate-notes rule 4): say so on /ready
      // rather than go on looking alive.
      error: (err) => {
        this.failure = `actor tree failed: ${err instanceof Error ? err.message : String(err)}`;
        this.ready = false;
        this.log.error({ err: String(err) }, 'coordinator failed');
      },
    });
    this.actor = actor;
    // Exits noticed while the coordinator was down are delivered to the first listener.
    this.cleanups.push(
      backend.onExit((exit) => {
        // The exit with the replica's last output, so a crash loop's ERROR says why.
        void describeExit(backend, exit).then((detail) => {
          this.sendTo(replicaActorId(exit.replicaId), { type: 'replica.session.exited', detail });
          this.wakeCapacityWaiters();
        });
      }),
    );
    actor.start();
    // Taken before any effect can resolve: what restore produced, for tests and the inspector.
    this.restoredStates = this.actorStates();

    // A deployment whose first snapshot never reached PostgreSQL starts afresh from its rows.
    const restored = new Set(deploymentRows.map((r) => r.deploymentId));
    for (const m of this.meta.values()) {
      if (restored.has(m.id)) continue;
      const rec = records.find((r) => r.id === m.id);
      if (rec) this.spawnDeployment(rec);
    }
    await this.reconcileSessions();
    this.endpoints = (await store.listEndpoints()).map((e) => ({
      name: e.name,
      backends: e.backends,
    }));
    this.publishNow();
    this.startTickers();
    this.wakeCapacityWaiters();
    this.ready = true;
    return { restoredDeployments: deploymentRows.length };
  }

  /**
   * After a restore: a replica that believes its session runs but the backend has none is told
   * its session exited (it then recovers); a backend session no actor owns is stopped, so no
   * orphan survives a crash.
   */
  private async reconcileSessions(): Promise<void> {
    const { backend } = this.deps;
    const known = new Set<string>();
    for (const d of this.liveDeployments()) {
      for (const [replicaId, r] of Object.entries(d.context.replicas)) {
        known.add(replicaId);
        if (r.state === 'HEALTHY' || r.state === 'UNHEALTHY') {
          const status = await backend.status(replicaId);
          const resumed =
            status !== 'running' &&
            (await resumeAfterShutdown(
              { backend, store: this.deps.store },
              { replicaId, deploymentId: d.context.deploymentId, state: r.state },
              () => this.sessionFor(r.revisionId),
            ));
          if (resumed) {
            this.sendTo(replicaActorId(replicaId), {
              type: 'replica.session.resumed',
              endpoint: resumed,
            });
          } else if (status !== 'running') {
            this.sendTo(replicaActorId(replicaId), {
              type: 'replica.session.exited',
              detail: 'session not found after coordinator restart',
            });
          }
        }
      }
    }
    for (const handle of await backend.list()) {
      if (!known.has(handle.replicaId)) {
        this.log.warn({ replica: handle.replicaId }, 'stopping a session no replica actor owns');
        await backend.stop(handle.replicaId, 5_000);
      }
    }
  }

  private startTickers(): void {
    const every = (s: number, fn: () => Promise<void>) => {
      const t = setInterval(() => {
        fn().catch((err) => this.log.error({ err: String(err) }, 'ticker failed'));
      }, s * 1000);
      t.unref();
      this.tickers.push(t);
    };
    if (this.deps.health) {
      every(this.config.healthCheckIntervalS, () => this.classifyNow());
      const health = this.deps.health;
      health
        .subscribe((record) => {
          const c = classifyRoute(record, Date.now(), {
            maxStalenessS: this.config.maxHealthStalenessS,
          });
          this.deliverHealth(record.routeId, c, record.checked_at, record.ready);
        })
        .then(
          (unsub) => {
            if (this.closed) void unsub();
            else this.cleanups.push(unsub);
          },
          (err) => this.log.error({ err: String(err) }, 'health subscription failed'),
        );
    }
    every(this.config.evictionIntervalS, () => this.evictNow());
    if (this.deps.scalingMetric) every(this.config.scalingIntervalS, () => this.evaluateScaling());
  }

  onScaling(listener: (e: ScalingEvent) => void): () => void {
    this.scalingListeners.add(listener);
    return () => this.scalingListeners.delete(listener);
  }

  /** One autoscaling pass over every deployment that has a scaling policy. */
  async evaluateScaling(): Promise<void> {
    const metricOf = this.deps.scalingMetric;
    if (!metricOf) return;
    for (const m of [...this.meta.values()]) {
      const policy = m.options.scaling_policy as ScalingPolicy | undefined;
      if (!policy) continue;
      const ref = this.deploymentRef(m.id);
      if (!ref || topState(ref.getSnapshot().value) !== 'RUNNING') continue;
      const ctx = (ref.getSnapshot() as { context: DeploymentContext }).context;
      const healthy = Object.values(ctx.replicas).filter(
        (r) => r.state === 'HEALTHY' && !r.leaving,
      ).length;
      const total = metricOf({ id: m.id, name: m.name }, policy.target_metric ?? 'inflight');
      const decision = decideScale({
        current: ctx.target,
        min: m.options.min_replicas,
        max: m.options.max_replicas,
        metric: total === null ? null : total / Math.max(1, healthy),
        policy,
        lastScaledAt: this.lastScaledAt.get(m.id) ?? null,
        now: Date.now(),
      });
      if (!decision) continue;
      await this.scale(m.id, decision.replicas);
      this.lastScaledAt.set(m.id, Date.now());
      const e: ScalingEvent = {
        deployment_id: m.id,
        name: m.name,
        from: ctx.target,
        to: decision.replicas,
        reason: decision.reason,
        at: new Date().toISOString(),
      };
      this.log.info({ ...e }, 'autoscaled');
      for (const l of this.scalingListeners) l(e);
    }
  }

  /** Stops tickers and actors, flushes what is queued; replicas keep running unless asked. */
  async close(opts: { stopReplicas?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ready = false;
    for (const t of this.tickers) clearInterval(t);
    for (const c of this.cleanups) await c();
    const stopping: ShutdownReplica[] = [];
    if (opts.stopReplicas) {
      for (const d of this.liveDeployments()) {
        for (const [replicaId, r] of Object.entries(d.context.replicas)) {
          if (r.state === 'TERMINATED') continue;
          stopping.push({ replicaId, deploymentId: d.context.deploymentId, state: r.state });
        }
      }
    }
    await recordShutdownStops(this.deps.store, stopping).catch((err) =>
      this.log.error({ err: String(err) }, 'recording the shutdown stops failed'),
    );
    await this.writer
      .flush()
      .catch((err) => this.log.error({ err: String(err) }, 'final flush failed'));
    this.actor?.stop();
    this.actor = null;
    await this.deps.backend.close({ stopReplicas: opts.stopReplicas ?? false });
  }

  // ---------------------------------------------------------------- commands

  async createDeployment(cmd: CreateDeploymentCommand): Promise<DeploymentView> {
    const session = withDeclared(generateSession(cmd.revision), cmd.declared_resources);
    const id = newId();
    const revisionId = newId();
    const record = await this.deps.store.createDeployment({
      id,
      name: cmd.name,
      runtime_variant: cmd.runtime_variant,
      spec: {
        request: cmd.request,
        min_replicas: cmd.min_replicas,
        max_replicas: cmd.max_replicas,
        routing: cmd.routing,
        admission: cmd.admission,
        scaling_group: cmd.scaling_group,
        scaling_policy: cmd.scaling_policy,
      },
      target_replicas: cmd.replicas,
      revision: { id: revisionId, number: 1, spec: cmd.revision, session },
    });
    this.sessions.set(revisionId, session);
    this.remember(record);
    this.spawnDeployment(record, session);
    await this.writer.barrier();
    return this.view(id);
  }

  async scale(idOrName: string, replicas: number): Promise<DeploymentView> {
    const { record, ref } = await this.liveDeployment(idOrName, 'scale');
    const m = this.meta.get(record.id)!;
    if (
      !Number.isInteger(replicas) ||
      replicas < m.options.min_replicas ||
      replicas > m.options.max_replicas
    ) {
      throw new FlotillaError(
        'validation',
        `replicas must be an integer from ${m.options.min_replicas} to ${m.options.max_replicas}`,
        {
          details: [
            {
              path: 'replicas',
              message: `expected an integer from ${m.options.min_replicas} to ${m.options.max_replicas}, got ${JSON.stringify(replicas)}`,
            },
          ],
        },
      );
    }
    ref.send({ type: 'deployment.scale', replicas });
    await this.deps.store.updateDeployment(record.id, { target_replicas: replicas });
    m.options.replicas = replicas;
    await this.writer.barrier();
    return this.view(record.id);
  }

  /**
   * A new revision only when what the replicas run changed; bounds and the scaling policy are
   * applied (validated) without one. Accepted in PENDING, PROVISIONING, RUNNING and ERROR (a
   * retry), so PostgreSQL and the actor never disagree; refused (409) otherwise.
   */
  async update(idOrName: string, cmd: UpdateDeploymentCommand): Promise<DeploymentView> {
    const { record, ref } = await this.liveDeployment(idOrName, 'update', ['ERROR']);
    const options = optionsOf(record);
    const bounds = nextBounds(
      options,
      cmd,
      cmd.scaling_policy as { min_replicas?: number; max_replicas?: number } | undefined,
    );
    const session = withDeclared(generateSession(cmd.revision), cmd.declared_resources);
    const current = record.revision_id ? await this.revision(record.revision_id) : null;
    const changed =
      !current ||
      !sameRevision(
        { spec: current.spec, declared: (current.session as SessionSpec | null)?.declared },
        { spec: cmd.revision, declared: session.declared },
      );
    let revisionId = record.revision_id ?? '';
    if (changed) {
      const revisions = await this.deps.store.listRevisions(record.id);
      const number = Math.max(0, ...revisions.map((r) => r.number)) + 1;
      revisionId = newId();
      await this.deps.store.addRevision({
        id: revisionId,
        deployment_id: record.id,
        number,
        spec: cmd.revision,
        session,
      });
      this.sessions.set(revisionId, session);
    }
    const spec = {
      ...(record.spec as object),
      request: cmd.request,
      ...(cmd.routing ? { routing: cmd.routing } : {}),
      ...(cmd.admission ? { admission: cmd.admission } : {}),
      ...(cmd.scaling_policy !== undefined ? { scaling_policy: cmd.scaling_policy } : {}),
      ...bounds,
    };
    const updated = await this.deps.store.updateDeployment(record.id, {
      ...(changed ? { revision_id: revisionId } : {}),
      spec,
    });
    this.remember(updated);
    if (
      bounds.min_replicas !== options.min_replicas ||
      bounds.max_replicas !== options.max_replicas
    ) {
      ref.send({ type: 'deployment.configure', ...bounds });
    }
    if (changed) {
      ref.send({
        type: 'deployment.update',
        revisionId,
        settings: { health: healthSettings(session) } as Partial<DeploymentSettings>,
      });
    }
    await this.writer.barrier();
    this.schedulePublish();
    return this.view(record.id);
  }

  async destroy(idOrName: string): Promise<DeploymentView> {
    const record = await this.record(idOrName);
    if (record.state === 'TERMINATED') {
      throw new FlotillaError(
        'invalid_state',
        `deployment "${record.name}" is already TERMINATED`,
        {
          details: [{ path: 'state', message: 'a TERMINATED deployment cannot be deleted again' }],
        },
      );
    }
    if (this.quarantine.get(record.id)) {
      await this.quarantine.remove(record.id, this.deps);
      return this.view(record.id);
    }
    const ref = this.deploymentRef(record.id);
    if (ref && topState(ref.getSnapshot().value) !== 'DESTROYING') {
      ref.send({ type: 'deployment.delete' });
      await this.writer.barrier();
    }
    return this.view(record.id);
  }

  /** Replaces the endpoint list the routing table carries (after an endpoint API change). */
  async reloadEndpoints(): Promise<void> {
    this.endpoints = (await this.deps.store.listEndpoints()).map((e) => ({
      name: e.name,
      backends: e.backends,
    }));
    this.schedulePublish();
  }

  // ---------------------------------------------------------------- queries

  /**
   * Reads wait for the transitions recorded so far to be durable, so a state shown is a state
   * PostgreSQL has (with its history row): what `get` says survives a crash.
   */
  async get(idOrName: string): Promise<DeploymentView> {
    await this.writer.barrier().catch(() => {});
    const record = await this.record(idOrName);
    return this.view(record.id, record);
  }

  async list(opts: { includeDeleted?: boolean } = {}): Promise<DeploymentView[]> {
    await this.writer.barrier().catch(() => {});
    const records = await this.deps.store.listDeployments(opts);
    return Promise.all(records.map((r) => this.view(r.id, r)));
  }

  routingTable(): RoutingTable {
    return this.table;
  }

  probeTargets(): ProbeTarget[] {
    return this.probeTargetCache;
  }

  /** Every transition of every actor, as it is recorded. */
  onChange(listener: (e: ChangeEvent) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  onRoutingTable(listener: (t: RoutingTable) => void): () => void {
    this.tableListeners.add(listener);
    return () => this.tableListeners.delete(listener);
  }

  actorCount(): number {
    let n = 0;
    for (const d of this.liveDeployments()) n += 1 + 2 * Object.keys(d.context.replicas).length;
    return n;
  }

  /** The state of every live actor, by actor id (for crash tests and the inspector). */
  actorStates(): Map<string, string> {
    const out = new Map<string, string>();
    for (const d of this.liveDeployments()) {
      out.set(deploymentActorId(d.context.deploymentId), topState(d.value));
      for (const [id, r] of Object.entries(d.context.replicas)) {
        const rep = this.actor?.system.get(replicaActorId(id)) as AnyActorRef | undefined;
        if (rep) out.set(replicaActorId(id), topState(rep.getSnapshot().value));
        const route = this.actor?.system.get(routeActorId(r.routeId)) as AnyActorRef | undefined;
        if (route) out.set(routeActorId(r.routeId), topState(route.getSnapshot().value));
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- health

  /** One classification tick: every probed route, read in pipelined batches. */
  async classifyNow(): Promise<void> {
    const health = this.deps.health;
    if (!health || this.classifying) return;
    this.classifying = true;
    try {
      const targets = this.probeTargetCache;
      const ids = targets.map((t) => t.routeId);
      const now = Date.now();
      const result = await classifyMany(health, ids, now, {
        maxStalenessS: this.config.maxHealthStalenessS,
      });
      let n = 0;
      for (const [routeId, c] of result) {
        this.deliverHealth(routeId, c, c.record?.checked_at ?? null, c.record?.ready ?? null);
        // send() runs the whole cascade synchronously: yield so the proxy keeps serving.
        if (++n % 500 === 0) await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.classifying = false;
    }
  }

  private deliverHealth(
    routeId: string,
    c: RouteClassification,
    checkedAt: number | null,
    ready: boolean | null,
  ): void {
    const target = this.probeTargetByRoute.get(routeId);
    const at = checkedAt ?? Date.now();
    this.sendTo(routeActorId(routeId), {
      type: `route.health.${c.class.toLowerCase()}` as 'route.health.healthy',
      reason: c.reason,
      at,
    });
    // A replica counts each probe result once; no data is no verdict on the replica.
    if (!target || checkedAt === null || ready === null) return;
    const last = this.lastFedCheck.get(target.replicaId) ?? 0;
    if (checkedAt <= last) return;
    this.lastFedCheck.set(target.replicaId, checkedAt);
    this.sendTo(replicaActorId(target.replicaId), {
      type: ready ? 'replica.health.passed' : 'replica.health.failed',
      detail: c.reason,
    });
  }

  /** One eviction sweep: each deployment's routes against its scaling group's statuses. */
  async evictNow(): Promise<void> {
    const groups = new Map<string, CleanupStatus[]>();
    for (const m of this.meta.values()) {
      let statuses = groups.get(m.scalingGroup);
      if (!statuses) {
        const g = await this.deps.store.getScalingGroup(m.scalingGroup);
        statuses = g.route_cleanup_target_statuses as CleanupStatus[];
        groups.set(m.scalingGroup, statuses);
      }
      this.sendTo(deploymentActorId(m.id), { type: 'deployment.evict', statuses });
    }
  }

  // ---------------------------------------------------------------- internals

  private effectPorts(): EffectPorts {
    const { backend } = this.deps;
    return {
      generateDefinition: async ({ revisionId }) => {
        const session = await this.sessionFor(revisionId, { regenerate: true });
        const cap = backend.capacity().total;
        const r = reservedSlots(session);
        for (const k of ['cpu', 'mem', 'gpu'] as const) {
          if (r[k] > cap[k]) {
            throw new FlotillaError(
              'generator_failed',
              `insufficient ${k}: requested ${r[k]}, the node has ${cap[k]} in total`,
            );
          }
        }
        await this.writer.barrier();
      },
      startSession: async ({ replicaId, revisionId }) => {
        const spec = await this.sessionFor(revisionId);
        const handle = await backend.start(replicaId, spec).catch((err: unknown) => {
          throw capacityRefusal(err, backend.capacity().total);
        });
        await this.writer.barrier();
        this.schedulePublish();
        return { endpoint: handle.url };
      },
      restartSession: async ({ replicaId, revisionId }) => {
        const spec = await this.sessionFor(revisionId);
        await backend.stop(replicaId, 5_000);
        const handle = await backend.start(replicaId, spec);
        await this.writer.barrier();
        // The endpoint may have changed: republish (after the machine takes it in) so the
        // prober and the proxy follow the new port.
        this.schedulePublish();
        return { endpoint: handle.url };
      },
      stopSession: async ({ replicaId, graceMs }) => {
        await backend.stop(replicaId, graceMs);
        this.lastFedCheck.delete(replicaId);
        this.wakeCapacityWaiters();
        await this.writer.barrier();
      },
      drainRoute: async ({ routeId }, signal) => {
        const inflight = this.deps.inflight;
        if (inflight) {
          while (inflight(routeId) > 0 && !signal.aborted) {
            await new Promise((r) => setTimeout(r, 50));
          }
        }
        await this.writer.barrier();
      },
      deploymentTransition: (ctx, state) => this.onDeploymentTransition(ctx, state),
      deploymentChanged: (ctx) => {
        this.writer.touch(ctx.deploymentId);
        this.schedulePublish();
      },
      replicaTransition: (ctx, state) => this.onReplicaTransition(ctx, state),
      routeTransition: (ctx, state) => this.onRouteTransition(ctx, state),
      publishRoutes: () => this.schedulePublish(),
      childError: (where, event) =>
        this.log.error(
          { where, error: String((event as { error?: unknown }).error) },
          'actor failed',
        ),
    };
  }

  private onDeploymentTransition(ctx: DeploymentContext, state: DeploymentState): void {
    this.note({
      actorId: deploymentActorId(ctx.deploymentId),
      kind: 'deployment',
      deploymentId: ctx.deploymentId,
      to: state,
      reason: ctx.reason,
    });
    if (state === 'TERMINATED') {
      const id = ctx.deploymentId;
      // The TERMINATED row must be durable before the actor (and its subtree) goes away.
      void this.writer
        .barrier()
        .then(async () => {
          await this.deps.store.updateDeployment(id, { deleted_at: new Date() });
          this.meta.delete(id);
          this.actor?.send({ type: 'coordinator.deployment.remove', deploymentId: id });
          this.schedulePublish();
        })
        .catch((err) =>
          this.log.error({ deployment: id, err: String(err) }, 'finishing deletion failed'),
        );
    }
  }

  /** Exited replicas whose output `logs --previous` shows, oldest first. */
  async previousReplicas(deploymentId: string): Promise<string[]> {
    return (await previousReplicaIds(this.deps.store, deploymentId)).kept;
  }

  private onReplicaTransition(ctx: ReplicaContext, state: ReplicaState): void {
    if (state === 'TERMINATED') {
      void this.writer
        .barrier()
        .then(() => prunePreviousLogs(this.deps.store, this.deps.backend, ctx.deploymentId))
        .catch((err) => this.log.warn({ err: String(err) }, 'pruning previous logs failed'));
    }
    this.note({
      actorId: replicaActorId(ctx.replicaId),
      kind: 'replica',
      deploymentId: ctx.deploymentId,
      to: state,
      reason: ctx.reason,
      replica: {
        revisionId: ctx.revisionId,
        endpoint: ctx.endpoint,
        info: { restarts: ctx.restarts, termination_cause: ctx.terminationCause },
      },
    });
  }

  private onRouteTransition(ctx: RouteContext, state: RouteState): void {
    this.note({
      actorId: routeActorId(ctx.routeId),
      kind: 'route',
      deploymentId: ctx.deploymentId,
      to: state,
      reason: ctx.reason,
      route: {
        replicaId: ctx.replicaId,
        weight: ctx.weight,
        lastHealth: ctx.lastHealth,
        reason: ctx.reason,
      },
    });
  }

  private note(n: {
    actorId: string;
    kind: 'deployment' | 'replica' | 'route';
    deploymentId: string;
    to: string;
    reason: string | null;
    replica?: { revisionId: string; endpoint: string | null; info: unknown };
    route?: { replicaId: string; weight: number; lastHealth: unknown; reason: string | null };
  }): void {
    const at = new Date();
    const from = this.writer.lastKnownState(n.actorId) ?? null;
    this.writer.record({ ...n, event: 'transition', at });
    this.schedulePublish();
    if (this.changeListeners.size === 0) return;
    const e: ChangeEvent = {
      kind: n.kind,
      actor_id: n.actorId,
      deployment_id: n.deploymentId,
      from,
      to: n.to,
      reason: n.reason,
      at: at.toISOString(),
    };
    for (const l of this.changeListeners) {
      try {
        l(e);
      } catch (err) {
        this.log.warn({ err: String(err) }, 'change listener threw');
      }
    }
  }

  private persistedSubtree(deploymentId: string): PersistedSubtree | undefined {
    const ref = this.deploymentRef(deploymentId);
    if (!ref) return undefined;
    const snap = ref.getPersistedSnapshot() as unknown as PersistedSubtree;
    return { ...snap, _v: SNAPSHOT_SCHEMA_VERSION };
  }

  private remember(record: DeploymentRecord): void {
    const options = optionsOf(record);
    this.meta.set(record.id, {
      id: record.id,
      name: record.name,
      routing: options.routing,
      scalingGroup: options.scaling_group,
      options,
    });
  }

  private spawnDeployment(record: DeploymentRecord, session?: SessionSpec): void {
    const m = this.meta.get(record.id)!;
    const s = session ?? this.sessions.get(record.revision_id ?? '');
    this.actor?.send({
      type: 'coordinator.deployment.add',
      input: {
        deploymentId: record.id,
        name: record.name,
        revisionId: record.revision_id ?? '',
        replicas: record.target_replicas,
        min_replicas: m.options.min_replicas,
        max_replicas: m.options.max_replicas,
        settings: {
          ...this.config.deploymentDefaults,
          ...(s ? { health: healthSettings(s) } : {}),
        },
      },
    });
  }

  private async sessionFor(
    revisionId: string,
    opts: { regenerate?: boolean } = {},
  ): Promise<SessionSpec> {
    const cached = this.sessions.get(revisionId);
    if (cached && !opts.regenerate) return cached;
    const rev = await this.revision(revisionId);
    if (!rev) throw new FlotillaError('not_found', `revision ${revisionId} not found`);
    // `declared` comes from the request, not the revision spec: keep what was stored.
    const stored = rev.session as SessionSpec | null | undefined;
    const session = withDeclared(generateSession(rev.spec as ModelRevisionSpec), stored?.declared);
    this.sessions.set(revisionId, session);
    return session;
  }

  /** Revisions never change once written, so each is read from PostgreSQL once. */
  private async revision(id: string): Promise<RevisionRecord | null> {
    const cached = this.revisions.get(id);
    if (cached) return cached;
    const rev = await this.deps.store.getRevision(id);
    if (rev) this.revisions.set(id, rev);
    return rev;
  }

  /** Capacity may have freed (a replica stopped or exited, the runtime started). */
  private wakeCapacityWaiters(): void {
    wakeCapacityWaiters(
      this.liveDeployments(),
      (id) => this.actor?.system.get(id) as AnyActorRef | undefined,
    );
  }

  private deploymentRef(deploymentId: string): AnyActorRef | undefined {
    return this.actor?.system.get(deploymentActorId(deploymentId)) as AnyActorRef | undefined;
  }

  private *liveDeployments(): Generator<{ value: unknown; context: DeploymentContext }> {
    for (const id of this.meta.keys()) {
      const ref = this.deploymentRef(id);
      if (ref) yield ref.getSnapshot() as { value: unknown; context: DeploymentContext };
    }
  }

  /** Sends straight to one actor; an id that is gone is skipped (xstate-notes rule 5). */
  private sendTo(systemId: string, event: { type: string } & Record<string, unknown>): void {
    const ref = this.actor?.system.get(systemId) as AnyActorRef | undefined;
    if (ref) ref.send(event);
  }

  private async record(idOrName: string): Promise<DeploymentRecord> {
    const r = await this.deps.store.getDeployment(idOrName);
    if (!r) throw notFound(idOrName);
    return r;
  }

  private async liveDeployment(idOrName: string, action: string, also: string[] = []) {
    const record = await this.record(idOrName);
    const ref = this.deploymentRef(record.id);
    const state = ref ? topState(ref.getSnapshot().value) : record.state;
    const accepts = ['PENDING', 'PROVISIONING', 'RUNNING', ...also];
    const quarantined = this.quarantine.get(record.id);
    if (quarantined) {
      throw new FlotillaError(
        'invalid_state',
        `cannot ${action} deployment "${record.name}": it is quarantined (${quarantined.reason}); delete it`,
        { details: [{ path: 'state', message: quarantined.reason }] },
      );
    }
    if (!ref || !accepts.includes(state)) {
      throw new FlotillaError(
        'invalid_state',
        `cannot ${action} deployment "${record.name}" in state ${state}`,
        {
          details: [
            {
              path: 'state',
              message: `${action} is accepted in ${accepts.join(', ')}; the deployment is ${state}`,
            },
          ],
        },
      );
    }
    return { record, ref };
  }

  // ---------------------------------------------------------------- routing table

  private schedulePublish(): void {
    if (this.publishScheduled) return;
    this.publishScheduled = true;
    setImmediate(() => {
      this.publishScheduled = false;
      this.publishNow();
    });
  }

  private publishNow(): void {
    const deployments: RoutingTable['deployments'] = [];
    const targets: ProbeTarget[] = [];
    for (const m of this.meta.values()) {
      const ref = this.deploymentRef(m.id);
      if (!ref) continue;
      const ctx = (ref.getSnapshot() as { context: DeploymentContext }).context;
      const routes: RouteEntry[] = [];
      for (const [replicaId, r] of Object.entries(ctx.replicas)) {
        if (!r.endpoint) continue;
        const session = this.sessions.get(r.revisionId);
        if (TABLE_ROUTE_STATES.has(r.routeState)) {
          routes.push({
            routeId: r.routeId,
            replicaId,
            url: r.endpoint,
            state: r.routeState as RouteEntry['state'],
            weight: 1,
            health: session?.health,
          });
        }
        if (session && PROBED_ROUTE_STATES.has(r.routeState)) {
          targets.push({ routeId: r.routeId, replicaId, url: r.endpoint, health: session.health });
        }
      }
      deployments.push({
        deploymentId: m.id,
        name: m.name,
        routing: m.routing,
        routes,
        ...(m.options.admission ? { admission: m.options.admission } : {}),
      });
    }
    this.probeTargetCache = targets;
    this.probeTargetByRoute = new Map(targets.map((t) => [t.routeId, t]));
    // Wall-clock based, so a restarted coordinator never publishes an "older" table.
    this.tableVersion = Math.max(this.tableVersion + 1, Date.now());
    this.table = { version: this.tableVersion, deployments, endpoints: this.endpoints };
    for (const l of this.tableListeners) {
      try {
        l(this.table);
      } catch (err) {
        this.log.warn({ err: String(err) }, 'routing table listener threw');
      }
    }
  }

  // ---------------------------------------------------------------- views

  private async view(id: string, given?: DeploymentRecord): Promise<DeploymentView> {
    const record = given ?? (await this.record(id));
    const options = optionsOf(record);
    const ref = this.deploymentRef(record.id);
    const revision = record.revision_id ? await this.revision(record.revision_id) : null;
    const base: ViewBase = {
      id: record.id,
      name: record.name,
      runtime_variant: record.runtime_variant,
      target_replicas: record.target_replicas,
      min_replicas: options.min_replicas,
      max_replicas: options.max_replicas,
      revision_id: record.revision_id,
      revision: (revision?.spec as ModelRevisionSpec) ?? null,
      session: revision?.session ?? null,
      routing: options.routing,
      admission: options.admission ?? {},
      scaling_group: options.scaling_group,
      created_at: record.created_at,
      updated_at: record.updated_at,
      deleted_at: record.deleted_at,
    };
    if (!ref) {
      const [replicas, routes] = await Promise.all([
        this.deps.store.listReplicas(record.id),
        this.deps.store.listRoutes(record.id),
      ]);
      const q = this.quarantine.get(record.id);
      const reason = q ? `quarantined: ${q.reason}` : record.reason;
      return storedView(base, record.state, reason, replicas, routes);
    }
    return liveView(
      base,
      ref.getSnapshot() as { value: unknown; context: DeploymentContext },
      (id) => (this.actor?.system.get(id) as AnyActorRef | undefined)?.getSnapshot(),
    );
  }
}

function withDeclared(s: SessionSpec, declared: SessionSpec['declared']): SessionSpec {
  return declared ? { ...s, declared } : s;
}

function healthSettings(s: SessionSpec): DeploymentSettings['health'] {
  return {
    healthy_threshold: s.health.healthy_threshold,
    unhealthy_threshold: s.health.unhealthy_threshold,
    startup_timeout_s: s.health.startup_timeout_s,
  };
}

export function isNotFound(e: unknown): boolean {
  return isFlotillaError(e) && e.code === 'not_found';
}
