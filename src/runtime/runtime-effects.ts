/**
 * The effects the machines invoke (provide-effects.ts), implemented over the runtime: sessions
 * on the backend, drains against the proxy's in-flight counts, and every transition recorded.
 * Also how the runtime's parts (health feed, autoscaler, commands, snapshot writer) are wired
 * to it.
 */
import {
  type DeploymentContext,
  type DeploymentState,
  deploymentActorId,
  replicaActorId,
  routeActorId,
} from '../../machines/deployment.ts';
import type { ReplicaContext, ReplicaState } from '../../machines/replica.ts';
import type { RouteContext, RouteState } from '../../machines/route.ts';
import type { ReplicaExit } from '../backends/backend.ts';
import { reservedSlots } from '../backends/capacity.ts';
import { FlotillaError } from '../domain/errors.ts';
import { Autoscaler } from '../scaling/autoscaler.ts';
import { createEventOutbox } from '../store/event-outbox.ts';
import { deploymentSnapshotOf } from './actor-refs.ts';
import { capacityRefusal } from './capacity-wait.ts';
import { describeExit, prunePreviousLogs } from './crash-loop.ts';
import { DeploymentCommands } from './deployment-commands.ts';
import { HealthFeed } from './health-feed.ts';
import type { EffectPorts } from './provide-effects.ts';
import type { SessionReconcileDeps } from './restore.ts';
import type { Runtime } from './runtime.ts';
import { resumeAfterShutdown } from './shutdown-restart.ts';
import { SnapshotWriter, topState } from './snapshot-writer.ts';
import { StorePause } from './store-pause.ts';
import type { Tickers } from './tickers.ts';
import type { TransitionRecord } from './transition-recorder.ts';

export function deploymentTransition(
  ctx: DeploymentContext,
  state: DeploymentState,
): TransitionRecord {
  return {
    actorId: deploymentActorId(ctx.deploymentId),
    kind: 'deployment',
    deploymentId: ctx.deploymentId,
    to: state,
    reason: ctx.reason,
  };
}

export function replicaTransition(ctx: ReplicaContext, state: ReplicaState): TransitionRecord {
  return {
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
  };
}

export function routeTransition(ctx: RouteContext, state: RouteState): TransitionRecord {
  return {
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
  };
}

export function runtimeEffects(rt: Runtime): EffectPorts {
  const { backend } = rt.deps;
  const pause = rt.storePause;
  /** Everything recorded so far is durable; while the store is away, waits for it. */
  const durable = () => pause.whileAway(() => rt.writer.barrier());
  return {
    prepareSession: async ({ revisionId }) => {
      const session = await pause.whileAway(() =>
        rt.sessions.sessionFor(revisionId, { regenerate: true }),
      );
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
      await durable();
    },
    startSession: async ({ replicaId, deploymentId, revisionId }, signal) => {
      const spec = await pause.whileAway(() => rt.sessions.sessionFor(revisionId));
      // STARTING is durable before the session starts: while the store is away this waits
      // (reconciliation paused) instead of failing the start and churning replacements.
      await durable();
      if (signal?.aborted) throw new FlotillaError('invalid_state', 'start abandoned');
      // A refusal for capacity becomes a wait (the replica's STARTING.capacity), not a failure.
      const handle = await backend.start(replicaId, spec).catch((err: unknown) => {
        throw capacityRefusal(err, backend.capacity().total);
      });
      await durable();
      rt.routing.markDirty(deploymentId);
      return { endpoint: handle.url };
    },
    restartSession: async ({ replicaId, deploymentId, revisionId }, signal) => {
      const spec = await pause.whileAway(() => rt.sessions.sessionFor(revisionId));
      await durable();
      if (signal?.aborted) throw new FlotillaError('invalid_state', 'restart abandoned');
      await backend.stop(replicaId, 5_000);
      const handle = await backend.start(replicaId, spec);
      await durable();
      // The endpoint may have changed: republish (after the machine takes it in) so the
      // prober and the proxy follow the new port.
      rt.routing.markDirty(deploymentId);
      return { endpoint: handle.url };
    },
    stopSession: async ({ replicaId, graceMs }) => {
      await backend.stop(replicaId, graceMs);
      rt.healthFeed?.forgetReplica(replicaId);
      rt.wakeCapacityWaiters();
      await durable();
    },
    drainRoute: async ({ routeId }, signal) => {
      // In-process proxy and proxies in other processes, both until drained or the deadline.
      const local = async () => {
        const inflight = rt.deps.inflight;
        if (!inflight) return;
        while (inflight(routeId) > 0 && !signal.aborted) {
          await new Promise((r) => setTimeout(r, 50));
        }
      };
      await Promise.all([local(), rt.deps.remoteDrained?.(routeId, signal)]);
      await durable();
    },
    deploymentTransition: (ctx, state) => {
      rt.transitions.record(deploymentTransition(ctx, state));
      // The TERMINATED row must be durable before the actor (and its subtree) goes away.
      if (state === 'TERMINATED') rt.finishDeletion(ctx.deploymentId);
    },
    deploymentChanged: (ctx) => {
      rt.writer.touch(ctx.deploymentId);
      rt.routing.markDirty(ctx.deploymentId);
    },
    replicaTransition: (ctx, state) => {
      rt.transitions.record(replicaTransition(ctx, state));
      if (state === 'TERMINATED') {
        // Keep the output of the newest exited replicas for `logs --previous`, forget older.
        void rt.writer
          .barrier()
          .then(() => prunePreviousLogs(rt.deps.store, rt.deps.backend, ctx.deploymentId))
          .catch((err) => rt.log.warn({ err }, 'pruning previous logs failed'));
      }
    },
    routeTransition: (ctx, state) => rt.transitions.record(routeTransition(ctx, state)),
    publishRoutes: (ctx) => rt.routing.markDirty(ctx.deploymentId),
    childError: (where, event) =>
      rt.log.error({ where, err: (event as { error?: unknown }).error }, 'actor failed'),
  };
}

export function healthFeedOf(rt: Runtime): HealthFeed | null {
  const health = rt.deps.health;
  if (!health) return null;
  return new HealthFeed({
    health,
    maxStalenessS: rt.config.maxHealthStalenessS,
    now: rt.now,
    targets: () => rt.routing.probeTargets(),
    targetOf: (routeId) => rt.routing.probeTarget(routeId),
    send: (id, e) => rt.sendTo(id, e),
  });
}

/**
 * The autoscaler over the runtime: tracked deployments with their policy and persisted
 * cooldown, the live replica states, the proxies' load, and history rows for its decisions
 * (written through an outbox, so a PostgreSQL outage queues them instead of losing them).
 */
export function autoscalerOf(rt: Runtime): Autoscaler {
  const history = createEventOutbox({
    write: (events) => rt.deps.store.recordEvents(events),
    logger: rt.log,
  });
  rt.onClose(() => history.close());
  return new Autoscaler({
    deployments: () =>
      Array.from(rt.tracked.all(), (t) => ({
        id: t.id,
        name: t.name,
        min_replicas: t.options.min_replicas,
        max_replicas: t.options.max_replicas,
        policy: t.options.scaling_policy,
        lastScaledAt: t.lastScaledAt,
      })),
    stateOf: (id) => {
      const ref = rt.deploymentRef(id);
      if (!ref) return null;
      const snap = deploymentSnapshotOf(ref);
      const replicas = Object.entries(snap.context.replicas).map(([replicaId, r]) => ({
        id: replicaId,
        routeId: r.routeId,
        state: r.state,
        leaving: r.leaving,
        waitingForCapacity: r.waitingForCapacity === true,
      }));
      return { state: topState(snap.value), target: snap.context.target, replicas };
    },
    loadReports: () => rt.deps.loadReports?.() ?? Promise.resolve([]),
    ...(rt.deps.routeInflight ? { routeInflight: rt.deps.routeInflight } : {}),
    resourceMetrics: rt.deps.resourceMetrics,
    scale: (id, replicas, removalOrder) => rt.scale(id, replicas, { removalOrder }),
    record: (r) => {
      const ref = rt.deploymentRef(r.deploymentId);
      history.add({
        actorId: deploymentActorId(r.deploymentId),
        kind: 'deployment',
        deploymentId: r.deploymentId,
        state: ref ? topState(deploymentSnapshotOf(ref).value) : 'RUNNING',
        event: r.event,
        reason: r.reason,
        at: new Date(r.at),
      });
    },
    now: rt.now,
    log: rt.log,
  });
}

export function commandsOf(rt: Runtime): DeploymentCommands {
  return new DeploymentCommands({
    store: rt.deps.store,
    backend: rt.deps.backend,
    quarantine: rt.quarantine,
    tracked: rt.tracked,
    sessions: rt.sessions,
    ref: (id) => rt.deploymentRef(id),
    spawn: (record, session) => rt.spawnDeployment(record, session),
    barrier: () => rt.writer.barrier(),
    routingChanged: (id) => rt.routing.markDirty(id),
    now: rt.now,
  });
}

export function storePauseOf(rt: Runtime): StorePause {
  return new StorePause({
    ping: () => rt.deps.store.ping(),
    now: rt.now,
    log: rt.log,
    // Paused effects wait on the writer: flush now rather than at its next retry.
    onBack: () => void rt.writer.flush().catch(() => {}),
  });
}

export function snapshotWriterOf(rt: Runtime): SnapshotWriter {
  const { deps, log } = rt;
  const observe = deps.observeFlush;
  return new SnapshotWriter(
    deps.store,
    { persisted: (id) => rt.persistedSubtree(id) },
    {
      flushDelayMs: rt.config.flushDelayMs,
      clock: rt.clock,
      onFlush: (ms, writes) => {
        rt.storePause.recovered();
        observe?.(ms, writes);
      },
      onError: (err) => {
        // The store being away is logged once per outage by the pause, not once a second.
        if (rt.storePause.failed(err)) return;
        log.error({ err }, 'persisting transitions failed; retrying in 1 s');
      },
      onConflict: (ids) =>
        log.error(
          { actors: ids },
          'snapshot version conflict: another coordinator wrote these actors',
        ),
    },
  );
}

/** Backend exits (also those noticed while the coordinator was down) to the replica actors. */
export function exitListenerOf(rt: Runtime): (exit: ReplicaExit) => void {
  return (exit) => {
    // The exit with the replica's last output, so a crash loop's ERROR says why.
    void describeExit(rt.deps.backend, exit).then((detail) => {
      rt.sendTo(replicaActorId(exit.replicaId), { type: 'replica.session.exited', detail });
      rt.wakeCapacityWaiters();
    });
  };
}

/** What reconciling sessions after a restore needs (restore.ts). */
export function reconcileDepsOf(rt: Runtime): SessionReconcileDeps {
  const { backend, store } = rt.deps;
  return {
    replicas: () => rt.liveReplicas(),
    backend,
    sessionExited: (replicaId, detail) =>
      rt.sendTo(replicaActorId(replicaId), { type: 'replica.session.exited', detail }),
    resume: (r) =>
      resumeAfterShutdown({ backend, store }, r, () => rt.sessions.sessionFor(r.revisionId)),
    sessionResumed: (replicaId, endpoint) =>
      rt.sendTo(replicaActorId(replicaId), { type: 'replica.session.resumed', endpoint }),
    warn: (obj, msg) => rt.log.warn(obj, msg),
  };
}

/** The runtime's periodic work: health classification, eviction, autoscaling, scale to zero. */
export function startTickersOf(rt: Runtime, tickers: Tickers): void {
  const every = (s: number, fn: () => Promise<unknown>) => tickers.every(s, fn);
  const { healthFeed, deps } = rt;
  if (healthFeed && deps.health) {
    every(rt.config.healthCheckIntervalS, () => healthFeed.classifyNow());
    deps.health
      .subscribe((record) => healthFeed.onRecord(record))
      .then(
        (unsub) => tickers.onStop(unsub),
        (err) => rt.log.error({ err }, 'health subscription failed'),
      );
  }
  every(rt.config.evictionIntervalS, () => rt.evictNow());
  rt.scaling.start(every, rt.config, Boolean(deps.lastRequests));
}
