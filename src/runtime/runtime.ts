/**
 * The actor runtime: the coordinator tree's lifecycle and a thin façade over its parts.
 * One deployment's flow: `createDeployment` (deployment-commands.ts) writes the deployment +
 * revision rows, then asks the coordinator to spawn the deployment actor (under its shard).
 * The actor's effects run here (generate the session, start/stop sessions on the backend,
 * drain routes); every transition goes through the SnapshotWriter to PostgreSQL and marks its
 * deployment dirty in the routing publisher (routing-publisher.ts), which re-publishes only
 * that deployment. Health results reach route and replica actors through the health feed
 * (health-feed.ts). After a crash, `start` rebuilds the tree from the rows (restore.ts) and
 * the actors re-invoke their idempotent effects.
 */
import { type Actor, createActor } from 'xstate';
import { deploymentActorId } from '../../machines/deployment.ts';
import type { RoutingTable } from '../domain/routing.ts';
import type { SessionSpec } from '../domain/session.ts';
import type { ProbeTarget } from '../health/prober.ts';
import type { ScalingEvent } from '../scaling/autoscaler.ts';
import type { DeploymentRecord } from '../store/store.ts';
import {
  actorCountIn,
  actorIn,
  actorStatesIn,
  type DeploymentRef,
  deploymentRefIn,
  deploymentSnapshotOf,
  liveDeploymentSnapshots,
  persistedSubtreeOf,
  settleRestoredTree,
} from './actor-refs.ts';
import { wakeCapacityWaiters } from './capacity-wait.ts';
import { DEFAULT_RUNTIME_CONFIG, type RuntimeConfig } from './config.ts';
import { DeadlineScheduler } from './deadline-scheduler.ts';
import {
  type CreateDeploymentCommand,
  type DeploymentCommands,
  deploymentInput,
  type UpdateDeploymentCommand,
} from './deployment-commands.ts';
import { optionsOf } from './deployment-options.ts';
import { type DeploymentView, deploymentView } from './deployment-view.ts';
import { evictionSweep } from './eviction.ts';
import type { HealthFeed } from './health-feed.ts';
import { type ProvidedCoordinator, provideEffects } from './provide-effects.ts';
import { Quarantine } from './quarantine.ts';
import {
  loadRestorePlan,
  type ReconciledReplica,
  reconcileSessions,
  resumeFromRows,
  SNAPSHOT_SCHEMA_VERSION,
} from './restore.ts';
import { RoutingPublisher } from './routing-publisher.ts';
import { routingOfTracked } from './routing-table-builder.ts';
import type { RuntimeDeps, RuntimeLogger } from './runtime-deps.ts';
import {
  autoscalerOf,
  commandsOf,
  exitListenerOf,
  healthFeedOf,
  reconcileDepsOf,
  runtimeEffects,
  snapshotWriterOf,
  startTickersOf,
  storePauseOf,
} from './runtime-effects.ts';
import { RuntimeScaling } from './runtime-scaling.ts';
import { scaleToZeroOf } from './scale-to-zero-wiring.ts';
import { SessionCache } from './session-cache.ts';
import { ShardPlacement } from './shard-placement.ts';
import { recordShutdownStops } from './shutdown-restart.ts';
import type { PersistedSubtree, SnapshotWriter } from './snapshot-writer.ts';
import type { StorePause } from './store-pause.ts';
import { type Clock, systemClock } from './system-clock.ts';
import { Tickers } from './tickers.ts';
import { TrackedDeployments } from './tracked-deployments.ts';
import { type ChangeEvent, TransitionRecorder } from './transition-recorder.ts';

export type { AutoscalingStatus, ScalingEvent } from '../scaling/autoscaler.ts';
export type { CreateDeploymentCommand, UpdateDeploymentCommand } from './deployment-commands.ts';
export { type DeploymentOptions, optionsOf } from './deployment-options.ts';
export type { DeploymentView, ReplicaView, RouteView } from './deployment-view.ts';
export type { RuntimeDeps, RuntimeLogger } from './runtime-deps.ts';
export type { ChangeEvent, TransitionRecord } from './transition-recorder.ts';

const silentLogger: RuntimeLogger = { info() {}, warn() {}, error() {} };

export class Runtime {
  readonly config: RuntimeConfig;
  readonly log: RuntimeLogger;
  readonly clock: Clock;
  readonly now = () => this.clock.now();
  readonly deadlines: DeadlineScheduler;
  private readonly machine: ProvidedCoordinator;
  private actor: Actor<ProvidedCoordinator> | null = null;
  private placement = new ShardPlacement(1); // which shard holds each deployment; set by start
  readonly writer: SnapshotWriter;
  /** Effects that need the store wait here while it is away (store-pause.ts). */
  readonly storePause: StorePause;
  /** The deployments this runtime runs, with their stored options. */
  readonly tracked = new TrackedDeployments();
  readonly sessions: SessionCache;
  readonly routing: RoutingPublisher;
  readonly healthFeed: HealthFeed | null;
  /** The autoscaler and scale to zero (runtime-scaling.ts). */
  readonly scaling: RuntimeScaling;
  private readonly closeHooks: Array<() => void> = [];
  private readonly commands: DeploymentCommands;
  readonly transitions: TransitionRecorder;
  private readonly tickers = new Tickers((err) => this.log.error({ err }, 'ticker failed'));
  private closed = false;
  ready = false;
  /** Set when the actor tree died; the process must be restarted (it restores from PostgreSQL). */
  failure: string | null = null;
  /** Every actor's state right after restore, before any effect ran. */
  restoredStates = new Map<string, string>();
  /** Deployments whose snapshot was rejected at restore (listed, deletable, on /ready). */
  readonly quarantine = new Quarantine();

  constructor(readonly deps: RuntimeDeps) {
    this.config = { ...DEFAULT_RUNTIME_CONFIG, ...(deps.config ?? {}) };
    this.log = deps.logger ?? silentLogger;
    this.clock = deps.clock ?? systemClock;
    this.sessions = new SessionCache(deps.store);
    this.routing = new RoutingPublisher({
      build: (id) => this.routingOf(id),
      now: this.now,
      warn: (obj, msg) => this.log.warn(obj, msg),
    });
    this.healthFeed = healthFeedOf(this);
    this.scaling = new RuntimeScaling(autoscalerOf(this), scaleToZeroOf(this));
    this.commands = commandsOf(this);
    this.storePause = storePauseOf(this);
    this.writer = snapshotWriterOf(this);
    this.transitions = new TransitionRecorder({
      writer: this.writer,
      now: this.now,
      deploymentChanged: (id) => this.routing.markDirty(id),
      log: this.log,
    });
    this.deadlines = new DeadlineScheduler(this.clock, { held: true }); // released by start
    this.machine = provideEffects(runtimeEffects(this), this.deadlines);
  }

  // ---------------------------------------------------------------- lifecycle

  /** Restores every non-terminal actor from PostgreSQL, starts the tree and the tickers. */
  async start(): Promise<{ restoredDeployments: number }> {
    const { store, backend } = this.deps;
    const plan = await loadRestorePlan({
      store,
      tracked: this.tracked,
      sessions: this.sessions,
      shards: this.config.shards,
    });
    this.writer.seed(plan.rows);
    this.quarantine.addRejected(plan, this.log);
    const { records, restorable } = plan;
    this.placement = plan.placement;
    const actor = createActor(this.machine, {
      input: { shards: plan.placement.count },
      snapshot: plan.coordinator as never,
    });
    actor.subscribe({
      // An errored root ignores every later event (docs/xstate-rules.md rule 4): say so on /ready
      // rather than go on looking alive.
      error: (err) => {
        this.failure = `actor tree failed: ${err instanceof Error ? err.message : String(err)}`;
        this.ready = false;
        this.log.error({ err }, 'coordinator failed');
      },
    });
    this.actor = actor;
    // Exits noticed while the coordinator was down are delivered to the first listener.
    this.tickers.onStop(backend.onExit(exitListenerOf(this)));
    actor.start();
    // Taken before any effect can resolve: what restore produced, for tests and the inspector.
    this.restoredStates = settleRestoredTree(actor);
    resumeFromRows(records, new Set(restorable.map((r) => r.deploymentId)), {
      ids: this.tracked.ids(),
      spawn: (record) => this.spawnDeployment(record),
      ref: (id) => this.deploymentRef(id),
      session: (revisionId) => this.sessions.cached(revisionId),
      warn: (obj, msg) => this.log.warn(obj, msg),
    });
    await reconcileSessions(reconcileDepsOf(this));
    await this.reloadEndpoints();
    for (const id of this.tracked.ids()) this.routing.markDirty(id);
    this.routing.publishNow();
    startTickersOf(this, this.tickers);
    this.wakeCapacityWaiters();
    this.deadlines.release(); // deadlines that passed while down fire now, in batches
    this.ready = true;
    return { restoredDeployments: restorable.length };
  }

  /** Stops tickers and actors, flushes what is queued; replicas keep running unless asked. */
  async close(opts: { stopReplicas?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ready = false;
    await this.tickers.stop();
    this.storePause.close();
    for (const c of this.closeHooks) c();
    if (opts.stopReplicas) {
      // The next start starts these again as a planned event (restore.ts, reconcileSessions).
      const stopping = [...this.liveReplicas()].filter((r) => r.state !== 'TERMINATED');
      await recordShutdownStops(this.deps.store, stopping).catch((err) =>
        this.log.error({ err }, 'recording the shutdown stops failed'),
      );
    }
    await this.writer.flush().catch((err) => this.log.error({ err }, 'final flush failed'));
    this.actor?.stop();
    this.actor = null;
    await this.deps.backend.close({ stopReplicas: opts.stopReplicas ?? false });
  }

  // ---------------------------------------------------------------- commands

  async createDeployment(cmd: CreateDeploymentCommand): Promise<DeploymentView> {
    return this.view(await this.commands.create(cmd));
  }

  async scale(
    idOrName: string,
    replicas: number,
    opts: { removalOrder?: readonly string[] } = {},
  ): Promise<DeploymentView> {
    const id = await this.commands.scale(idOrName, replicas, opts);
    this.scaling.toZero.scaled(id, replicas);
    return this.view(id);
  }

  /**
   * A proxy holds a request for the deployment: scale it to one replica if it is at zero by
   * its scale-to-zero policy. Idempotent; resolves true when this call scaled it.
   */
  activate(deploymentId: string): Promise<boolean> {
    return this.scaling.toZero.activate(deploymentId);
  }

  async update(idOrName: string, cmd: UpdateDeploymentCommand): Promise<DeploymentView> {
    return this.view(await this.commands.update(idOrName, cmd));
  }

  async destroy(idOrName: string): Promise<DeploymentView> {
    return this.view(await this.commands.destroy(idOrName));
  }

  /** Replaces the endpoint list the routing table carries (after an endpoint API change). */
  async reloadEndpoints(): Promise<void> {
    const endpoints = await this.deps.store.listEndpoints();
    this.routing.setEndpoints(endpoints.map((e) => ({ name: e.name, backends: e.backends })));
  }

  onScaling(listener: (e: ScalingEvent) => void): () => void {
    return this.scaling.onScaling(listener);
  }

  /** Runs when the runtime closes (after its tickers stopped). */
  onClose(hook: () => void): void {
    this.closeHooks.push(hook);
  }

  /** One classification tick: every probed route, read in pipelined batches. */
  async classifyNow(): Promise<void> {
    await this.healthFeed?.classifyNow();
  }

  /** One eviction sweep: each deployment's routes against its scaling group's statuses. */
  async evictNow(): Promise<void> {
    await evictionSweep(this.tracked.all(), this.deps.store, (id, event) =>
      this.sendTo(deploymentActorId(id), event),
    );
  }

  // ---------------------------------------------------------------- queries

  /**
   * Reads wait for the transitions recorded so far to be durable, so a state shown is a state
   * PostgreSQL has (with its history row): what `get` says survives a crash.
   */
  async get(idOrName: string): Promise<DeploymentView> {
    await this.writer.settled();
    const record = await this.commands.record(idOrName);
    return this.view(record.id, record);
  }

  async list(opts: { includeDeleted?: boolean } = {}): Promise<DeploymentView[]> {
    await this.writer.settled();
    const records = await this.deps.store.listDeployments(opts);
    return Promise.all(records.map((r) => this.view(r.id, r)));
  }

  /** The newest routing table (its deployment list built on first read). */
  routingTable(): RoutingTable {
    return this.routing.current();
  }

  probeTargets(): ProbeTarget[] {
    return this.routing.probeTargets();
  }

  /** Every transition of every actor, as it is recorded. */
  onChange(listener: (e: ChangeEvent) => void): () => void {
    return this.transitions.onChange(listener);
  }

  /** Each published table, with its change attached (`changeOf`). */
  onRoutingTable(listener: (t: RoutingTable) => void): () => void {
    return this.routing.subscribe(listener);
  }

  actorCount(): number {
    return actorCountIn(this.actor?.system, this.tracked.ids());
  }

  /** The state of every live actor, by actor id (for crash tests and the inspector). */
  actorStates(): Map<string, string> {
    return actorStatesIn(this.actor?.system, this.tracked.ids());
  }

  // ---------------------------------------------------------------- transitions

  /** The deployment reached TERMINATED: once that row is durable, its actor goes away. */
  finishDeletion(id: string): void {
    void this.writer
      .barrier()
      .then(async () => {
        await this.deps.store.updateDeployment(id, { deleted_at: new Date(this.now()) });
        this.tracked.untrack(id);
        this.scaling.forget(id);
        const shard = this.placement.release(id) ?? -1; // -1: never placed, nothing to remove
        this.actor?.send({ type: 'coordinator.deployment.remove', deploymentId: id, shard });
        this.routing.markDirty(id);
      })
      .catch((err) => this.log.error({ deployment: id, err }, 'finishing deletion failed'));
  }

  /** Capacity may have freed (a replica stopped or exited, the runtime started). */
  wakeCapacityWaiters(): void {
    wakeCapacityWaiters(liveDeploymentSnapshots(this.actor?.system, this.tracked.ids()), (id) =>
      actorIn(this.actor?.system, id),
    );
  }

  // ---------------------------------------------------------------- internals

  private routingOf(id: string) {
    const d = this.tracked.get(id);
    const ref = d && this.deploymentRef(id);
    return d && ref ? routingOfTracked(d, deploymentSnapshotOf(ref).context, this.sessions) : null;
  }

  persistedSubtree(deploymentId: string): PersistedSubtree | undefined {
    const ref = this.deploymentRef(deploymentId);
    return ref && persistedSubtreeOf(ref, SNAPSHOT_SCHEMA_VERSION);
  }

  spawnDeployment(record: DeploymentRecord, session?: SessionSpec): void {
    const options = this.tracked.get(record.id)?.options ?? optionsOf(record);
    const s = session ?? this.sessions.cached(record.revision_id ?? '');
    const input = deploymentInput(record, options, s, this.config.deploymentDefaults);
    const shard = this.placement.place(record.id);
    this.actor?.send({ type: 'coordinator.deployment.add', input, shard });
  }

  deploymentRef(deploymentId: string): DeploymentRef | undefined {
    return deploymentRefIn(this.actor?.system, deploymentId);
  }

  *liveReplicas(): Generator<ReconciledReplica> {
    for (const d of liveDeploymentSnapshots(this.actor?.system, this.tracked.ids())) {
      const { deploymentId } = d.context;
      for (const [replicaId, r] of Object.entries(d.context.replicas)) {
        yield { replicaId, deploymentId, revisionId: r.revisionId, state: r.state };
      }
    }
  }

  /** Sends straight to one actor; an id that is gone is skipped (docs/xstate-rules.md rule 5). */
  sendTo(systemId: string, event: { type: string } & Record<string, unknown>): void {
    actorIn(this.actor?.system, systemId)?.send(event);
  }

  private async view(id: string, given?: DeploymentRecord): Promise<DeploymentView> {
    const record = given ?? (await this.commands.record(id));
    const system = this.actor?.system;
    const view = await deploymentView(record, {
      store: this.deps.store,
      revision: (revisionId) => this.sessions.revision(revisionId),
      live: this.deploymentRef(record.id),
      child: (sid) => actorIn(system, sid)?.getSnapshot(),
      now: this.now(),
      quarantined: this.quarantine.get(record.id)?.reason,
      paused: this.storePause.describe(),
    });
    return this.scaling.decorate(view, this.tracked.get(record.id)?.options ?? optionsOf(record));
  }
}
