/**
 * Typed handles on the actor tree, for code outside machines/ (the runtime, views, tests), so
 * nobody needs `as AnyActorRef`, `getSnapshot() as { context }` or a `Record<string, unknown>`
 * cast over a deployment's children.
 *
 *   const ref = deploymentRef(actor.system, 'd1');        // DeploymentActorRef | undefined
 *   const ctx = ref && deploymentContextOf(ref);           // DeploymentContext
 *   const { replicas, routes } = childrenOf(ref.getSnapshot()); // typed by id
 */
import type { ActorRefFrom, ActorSystem, SnapshotFrom } from 'xstate';
import {
  type DeploymentContext,
  deploymentActorId,
  type deploymentMachine,
  replicaActorId,
  routeActorId,
} from './deployment.ts';
import type { ReplicaContext, replicaMachine } from './replica.ts';
import type { RouteContext, routeMachine } from './route.ts';

// Any actor system: the registry's actor types are not tracked, ids are looked up by string.
// biome-ignore lint/suspicious/noExplicitAny: the system's own type parameter is any.
type AnyActorSystem = ActorSystem<any>;

export type DeploymentActorRef = ActorRefFrom<typeof deploymentMachine>;
export type ReplicaActorRef = ActorRefFrom<typeof replicaMachine>;
export type RouteActorRef = ActorRefFrom<typeof routeMachine>;
export type DeploymentSnapshot = SnapshotFrom<typeof deploymentMachine>;
export type ReplicaSnapshot = SnapshotFrom<typeof replicaMachine>;
export type RouteSnapshot = SnapshotFrom<typeof routeMachine>;

/** A deployment's live children, keyed by replica id and by route id. */
export interface DeploymentChildren {
  replicas: Record<string, ReplicaActorRef>;
  routes: Record<string, RouteActorRef>;
}

const REPLICA_PREFIX = replicaActorId('');
const ROUTE_PREFIX = routeActorId('');

/**
 * The replicas and routes among a deployment's children, typed. Children are told apart by the
 * id helpers' prefixes (`replica:`, `route:`); the deployment spawns only those two kinds under
 * those ids, so the narrowing below is exact. Other children (invoked timers, the generator)
 * are left out.
 */
export function childrenOf(snapshot: Pick<DeploymentSnapshot, 'children'>): DeploymentChildren {
  const out: DeploymentChildren = { replicas: {}, routes: {} };
  for (const [id, ref] of Object.entries(snapshot.children)) {
    if (!ref) continue;
    if (id.startsWith(REPLICA_PREFIX)) {
      out.replicas[id.slice(REPLICA_PREFIX.length)] = ref as ReplicaActorRef;
    } else if (id.startsWith(ROUTE_PREFIX)) {
      out.routes[id.slice(ROUTE_PREFIX.length)] = ref as RouteActorRef;
    }
  }
  return out;
}

/** The deployment actor registered for `deploymentId` in `system`, if it is running. */
export function deploymentRef(
  system: AnyActorSystem,
  deploymentId: string,
): DeploymentActorRef | undefined {
  return system.get(deploymentActorId(deploymentId));
}

/** The replica actor registered for `replicaId` in `system`, if it is running. */
export function replicaRef(system: AnyActorSystem, replicaId: string): ReplicaActorRef | undefined {
  return system.get(replicaActorId(replicaId));
}

/** The route actor registered for `routeId` in `system`, if it is running. */
export function routeRef(system: AnyActorSystem, routeId: string): RouteActorRef | undefined {
  return system.get(routeActorId(routeId));
}

export function deploymentContextOf(ref: DeploymentActorRef): DeploymentContext {
  return ref.getSnapshot().context;
}

export function replicaContextOf(ref: ReplicaActorRef): ReplicaContext {
  return ref.getSnapshot().context;
}

export function routeContextOf(ref: RouteActorRef): RouteContext {
  return ref.getSnapshot().context;
}
