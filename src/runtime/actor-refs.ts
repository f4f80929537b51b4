/**
 * Typed access to the actors of the running tree, so no caller casts a snapshot: a deployment
 * ref and its snapshot typed from the machine, replica and route snapshots likewise.
 */
import type { ActorRefFrom, ActorSystem, AnyActorRef, SnapshotFrom } from 'xstate';
import { type PersistedSubtree, topState } from './snapshot-writer.ts';

// biome-ignore lint/suspicious/noExplicitAny: the system of any tree (XState's own default).
type AnyActorSystem = ActorSystem<any>;

import {
  deploymentActorId,
  type deploymentMachine,
  replicaActorId,
  routeActorId,
} from '../../machines/deployment.ts';
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
export function actorIn(
  system: AnyActorSystem | undefined,
  systemId: string,
): AnyActorRef | undefined {
  return system?.get(systemId) as AnyActorRef | undefined;
}

/** A deployment actor's current snapshot (state value and context). */
export function deploymentSnapshotOf(ref: DeploymentRef): DeploymentSnapshot {
  return ref.getSnapshot();
}

/**
 * A deployment's persisted snapshot with its children (its row in PostgreSQL), stamped with
 * the snapshot schema version.
 */
export function persistedSubtreeOf(ref: DeploymentRef, schemaVersion: number): PersistedSubtree {
  // XState types a persisted snapshot as Snapshot<unknown>; a machine actor's carries its state
  // value and children, which is the PersistedSubtree shape.
  const snap = ref.getPersistedSnapshot() as Partial<PersistedSubtree>;
  return { ...snap, value: snap.value, children: snap.children ?? {}, _v: schemaVersion };
}

/** The snapshots of the deployments in `ids` that have a live actor. */
export function* liveDeploymentSnapshots(
  system: AnyActorSystem | undefined,
  ids: Iterable<string>,
): Generator<DeploymentSnapshot> {
  for (const id of ids) {
    const ref = deploymentRefIn(system, id);
    if (ref) yield ref.getSnapshot();
  }
}

/** The top-level state of every live actor of these deployments, by actor id. */
/** How many actors the live deployments run (each: itself, its replicas and their routes). */
export function actorCountIn(system: AnyActorSystem | undefined, ids: Iterable<string>): number {
  let n = 0;
  for (const d of liveDeploymentSnapshots(system, ids)) {
    n += 1 + 2 * Object.keys(d.context.replicas).length;
  }
  return n;
}

export function actorStatesIn(
  system: AnyActorSystem | undefined,
  ids: Iterable<string>,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const d of liveDeploymentSnapshots(system, ids)) {
    out.set(deploymentActorId(d.context.deploymentId), topState(d.value));
    for (const [id, r] of Object.entries(d.context.replicas)) {
      const rep = actorIn(system, replicaActorId(id));
      if (rep) out.set(replicaActorId(id), topState(rep.getSnapshot().value));
      const route = actorIn(system, routeActorId(r.routeId));
      if (route) out.set(routeActorId(r.routeId), topState(route.getSnapshot().value));
    }
  }
  return out;
}

/** What an actor of the tree exposes to `settleRestoredTree` (XState's `Actor.options`). */
interface RestoredActor {
  id: string;
  options?: { readonly snapshot?: unknown };
  getSnapshot(): { status?: string; value?: unknown; children?: Record<string, RestoredActor> };
}

/**
 * What a restored actor's options become once it runs: nothing of them is read after `start`
 * (xstate 5.33 reads `input` and `devTools` there, `snapshot` in the constructor), and the
 * object of about ten fields per actor, with the persisted snapshot it points to, goes.
 */
const RELEASED_OPTIONS: { snapshot?: unknown } = Object.freeze({});

/** Actor ids the runtime reports states for (`actorStatesIn`): deployments, replicas, routes. */
const REPORTED_ACTOR = /^(deployment|replica|route):/;

/**
 * One walk over a tree just restored: lets go of the persisted snapshots it was built from, and
 * returns the top-level state of every live deployment, replica and route actor (what
 * `actorStatesIn` reports, in one pass instead of a lookup per actor).
 *
 * Why let go: XState keeps the options an actor was created with for its whole life,
 * `snapshot` included, though only the constructor reads it (xstate 5.33 `Actor`). After a
 * restore every actor held its own persisted snapshot (the root the whole assembled fleet), so
 * the parsed rows stayed live beside the actors built from them. Each restored actor's options
 * are replaced by one shared empty object (RELEASED_OPTIONS).
 */
export function settleRestoredTree(root: AnyActorRef): Map<string, string> {
  const states = new Map<string, string>();
  const stack: RestoredActor[] = [root as RestoredActor];
  for (let actor = stack.pop(); actor; actor = stack.pop()) {
    if (actor.options && actor.options.snapshot !== undefined) actor.options = RELEASED_OPTIONS;
    const snapshot = actor.getSnapshot();
    // Not active: finished or failed, so not in the system registry either (rule 7).
    if (snapshot.status === 'active' && REPORTED_ACTOR.test(actor.id)) {
      states.set(actor.id, topState(snapshot.value));
    }
    const children = snapshot.children;
    if (children) for (const id in children) stack.push(children[id] as RestoredActor);
  }
  return states;
}
