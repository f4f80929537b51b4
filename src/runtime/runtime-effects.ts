/**
 * The effects the machines invoke (provide-effects.ts), implemented over the runtime: sessions
 * on the backend, drains against the proxy's in-flight counts, and every transition recorded.
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
import { FlotillaError } from '../domain/errors.ts';
import type { EffectPorts } from './provide-effects.ts';
import type { Runtime } from './runtime.ts';
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
  return {
    generateDefinition: async ({ revisionId }) => {
      const session = await rt.sessions.sessionFor(revisionId, { regenerate: true });
      const cap = backend.capacity().total;
      const r = session.resources;
      for (const k of ['cpu', 'mem', 'gpu'] as const) {
        if (r[k] > cap[k]) {
          throw new FlotillaError(
            'generator_failed',
            `insufficient ${k}: requested ${r[k]}, the node has ${cap[k]} in total`,
          );
        }
      }
      await rt.writer.barrier();
    },
    startSession: async ({ replicaId, deploymentId, revisionId }) => {
      const spec = await rt.sessions.sessionFor(revisionId);
      const handle = await backend.start(replicaId, spec);
      await rt.writer.barrier();
      rt.routing.markDirty(deploymentId);
      return { endpoint: handle.url };
    },
    restartSession: async ({ replicaId, deploymentId, revisionId }) => {
      const spec = await rt.sessions.sessionFor(revisionId);
      await backend.stop(replicaId, 5_000);
      const handle = await backend.start(replicaId, spec);
      await rt.writer.barrier();
      // The endpoint may have changed: republish (after the machine takes it in) so the
      // prober and the proxy follow the new port.
      rt.routing.markDirty(deploymentId);
      return { endpoint: handle.url };
    },
    stopSession: async ({ replicaId, graceMs }) => {
      await backend.stop(replicaId, graceMs);
      rt.healthFeed?.forgetReplica(replicaId);
      await rt.writer.barrier();
    },
    drainRoute: async ({ routeId }, signal) => {
      const inflight = rt.deps.inflight;
      if (inflight) {
        while (inflight(routeId) > 0 && !signal.aborted) {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      await rt.writer.barrier();
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
    replicaTransition: (ctx, state) => rt.transitions.record(replicaTransition(ctx, state)),
    routeTransition: (ctx, state) => rt.transitions.record(routeTransition(ctx, state)),
    publishRoutes: (ctx) => rt.routing.markDirty(ctx.deploymentId),
    childError: (where, event) =>
      rt.log.error({ where, err: (event as { error?: unknown }).error }, 'actor failed'),
  };
}
