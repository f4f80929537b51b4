/**
 * Gives the pure machines their effects (`machine.provide`). Every effect is idempotent and
 * keyed by the actor's id, because a restored actor re-invokes the effect of the state it is
 * in: starting replica R again adopts the running R, stopping a stopped R resolves, draining a
 * drained route resolves, publishing the routing table is a full replace.
 *
 * Time is an effect too: every machine reads the one `clock` given here (machines/clock.ts).
 */
import { fromPromise } from 'xstate';
import type { MachineClock } from '../../machines/clock.ts';
import { coordinatorMachine, shardMachine } from '../../machines/coordinator.ts';
import {
  type DeploymentContext,
  type DeploymentState,
  deploymentActorId,
  deploymentMachineWithClock,
  type GenerateInput,
} from '../../machines/deployment.ts';
import {
  type ReplicaContext,
  type ReplicaState,
  replicaMachineWithClock,
  type SessionInput,
  type SessionStarted,
  type StopInput,
} from '../../machines/replica.ts';
import {
  type DrainInput,
  type RouteContext,
  type RouteState,
  routeMachineWithClock,
} from '../../machines/route.ts';
import { systemClock } from './system-clock.ts';

export { systemClock };

/** What the effects need from the runtime; each function is idempotent per id. */
export interface EffectPorts {
  prepareSession(input: GenerateInput): Promise<void>;
  /** `signal` aborts when the replica left the state that invoked it (do not start then). */
  startSession(input: SessionInput, signal?: AbortSignal): Promise<SessionStarted>;
  restartSession(input: SessionInput, signal?: AbortSignal): Promise<SessionStarted>;
  stopSession(input: StopInput): Promise<void>;
  drainRoute(input: DrainInput, signal: AbortSignal): Promise<void>;
  deploymentTransition(ctx: DeploymentContext, state: DeploymentState): void;
  deploymentChanged(ctx: DeploymentContext): void;
  replicaTransition(ctx: ReplicaContext, state: ReplicaState): void;
  routeTransition(ctx: RouteContext, state: RouteState): void;
  /** A route's entry in the routing table changed. */
  publishRoutes(ctx: RouteContext): void;
  childError(where: string, event: unknown): void;
}

/**
 * The coordinator with every effect provided. `clock` is the one clock of every machine in the
 * tree (deadlines and the deadline timers); pass a manual one in tests to move time.
 */
export function provideEffects(ports: EffectPorts, clock: MachineClock = systemClock) {
  const replica = replicaMachineWithClock(clock).provide({
    actions: {
      recordTransition: ({ context }, params) => ports.replicaTransition(context, params.state),
    },
    actors: {
      startSession: fromPromise<SessionStarted, SessionInput>(({ input, signal }) =>
        ports.startSession(input, signal),
      ),
      restartSession: fromPromise<SessionStarted, SessionInput>(({ input, signal }) =>
        ports.restartSession(input, signal),
      ),
      stopSession: fromPromise<void, StopInput>(({ input }) => ports.stopSession(input)),
    },
  });
  const route = routeMachineWithClock(clock).provide({
    actions: {
      recordTransition: ({ context }, params) => ports.routeTransition(context, params.state),
      publishRoutes: ({ context }) => ports.publishRoutes(context),
    },
    actors: {
      drainRoute: fromPromise<void, DrainInput>(({ input, signal }) =>
        ports.drainRoute(input, signal),
      ),
    },
  });
  const deployment = deploymentMachineWithClock(clock).provide({
    actions: {
      recordTransition: ({ context }, params) =>
        ports.deploymentTransition(context, (params as { state: DeploymentState }).state),
      recordChange: ({ context }) => ports.deploymentChanged(context),
      reportChildError: ({ context, event }) =>
        ports.childError(deploymentActorId(context.deploymentId), event),
    },
    actors: {
      replica,
      route,
      prepareSession: fromPromise<void, GenerateInput>(({ input }) => ports.prepareSession(input)),
    },
  });
  const shard = shardMachine.provide({
    actors: { deployment },
    actions: {
      reportChildError: ({ context, event }) => ports.childError(`shard:${context.index}`, event),
    },
  });
  return coordinatorMachine.provide({
    actors: { shard },
    actions: { reportChildError: ({ event }) => ports.childError('coordinator', event) },
  });
}

export type ProvidedCoordinator = ReturnType<typeof provideEffects>;
