/**
 * Typed access to the actors of the running tree, so no caller casts a snapshot: a deployment
 * ref and its snapshot typed from the machine, replica and route snapshots likewise.
 */
import type { ActorRefFrom, AnyActorRef, AnyActorSystem, SnapshotFrom } from 'xstate';
import { deploymentActorId, type deploymentMachine } from '../../machines/deployment.ts';
import type { replicaMachine } from '../../machines/replica.ts';
import type { routeMachine } from '../../machines/route.ts';

export type DeploymentRef = ActorRefFrom<typeof deploymentMachine>;
export type DeploymentSnapshot = SnapshotFrom<typeof deploymentMachine>;
export type ReplicaSnapshot = SnapshotFrom<typeof replicaMachine>;
export type RouteSnapshot = SnapshotFrom<typeof routeMachine>;

/** The deployment actor of `deploymentId`, if it runs in `system`. */
export function deploymentRefIn(
  system: AnyActorSystem | undefined,
  deploymentId: string,
): DeploymentRef | undefined {
  // The system registry is untyped; every `deployment:<id>` is spawned from deploymentMachine.
  return system?.get(deploymentActorId(deploymentId)) as DeploymentRef | undefined;
}

/** Any actor of the tree by system id (replica:…, route:…); undefined when gone. */
export function actorIn(system: AnyActorSystem | undefined, systemId: string): AnyActorRef | undefined {
  return system?.get(systemId) as AnyActorRef | undefined;
}

/** A deployment actor's current snapshot (state value and context). */
export function deploymentSnapshotOf(ref: DeploymentRef): DeploymentSnapshot {
  return ref.getSnapshot();
}
