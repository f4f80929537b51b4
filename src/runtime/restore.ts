/**
 * Rebuilds the coordinator's persisted snapshot from per-deployment rows, so the whole tree is
 * created and started once (XState has no API to restore one deployment into a running tree;
 * docs/xstate-rules.md rule 9). Deployments are spread over enough shards that none holds more
 * than 32 (src/runtime/shard-placement.ts); a restart may move them between shards, which no
 * one sees (events go to a deployment by its system id). Also what restore checks: which
 * stored rows can be restored, and which backend sessions the restored actors own.
 */

import { shardActorId } from '../../machines/coordinator.ts';
import {
  type DeploymentContext,
  type DeploymentEvent,
  type DeploymentSettings,
  type DeploymentState,
  DeploymentStates,
  deploymentActorId,
} from '../../machines/deployment.ts';
import type { ReplicaBackend } from '../backends/backend.ts';
import type { SessionSpec } from '../domain/session.ts';
import type { ActorSnapshotRow, DeploymentRecord, Store } from '../store/store.ts';
import { type DeploymentRef, deploymentSnapshotOf } from './actor-refs.ts';
import { healthSettings } from './deployment-commands.ts';
import type { SessionCache } from './session-cache.ts';
import { ShardPlacement } from './shard-placement.ts';
import type { TrackedDeployments } from './tracked-deployments.ts';

/** Bumped when a machine changes in a way old snapshots cannot be read by (rule 7). */
export const SNAPSHOT_SCHEMA_VERSION = 1;

export interface DeploymentSnapshotRow {
  deploymentId: string;
  snapshot: unknown;
}

interface PersistedChild {
  snapshot: unknown;
  src: string;
  systemId: string;
  syncSnapshot: false;
}

export class SnapshotRejected extends Error {}

/** A deployment snapshot must name a documented state, or restore would drop it silently (rule 7). */
export function validateDeploymentSnapshot(snapshot: unknown): asserts snapshot is {
  value: unknown;
  context: { deploymentId: string };
  children: Record<string, unknown>;
} {
  const s = snapshot as {
    value?: unknown;
    context?: { deploymentId?: unknown };
    children?: unknown;
  };
  const top =
    typeof s?.value === 'string'
      ? s.value
      : s?.value && typeof s.value === 'object'
        ? Object.keys(s.value)[0]
        : undefined;
  if (!top || !DeploymentStates.includes(top as DeploymentState)) {
    throw new SnapshotRejected(`unknown deployment state ${JSON.stringify(s?.value)}`);
  }
  if (typeof s.context?.deploymentId !== 'string') throw new SnapshotRejected('no deploymentId');
  if (!s.children || typeof s.children !== 'object') throw new SnapshotRejected('no children');
}

/** The coordinator's snapshot with each row's deployment under the shard `placement` gives it. */
export function assembleCoordinatorSnapshot(
  placement: ShardPlacement,
  rows: readonly DeploymentSnapshotRow[],
): unknown {
  const shards = placement.count;
  const shardChildren: Record<string, Record<string, PersistedChild>> = {};
  for (let i = 0; i < shards; i++) shardChildren[shardActorId(i)] = {};
  for (const row of rows) {
    const id = deploymentActorId(row.deploymentId);
    const shard = shardActorId(placement.place(row.deploymentId));
    (shardChildren[shard] as Record<string, PersistedChild>)[id] = {
      snapshot: row.snapshot,
      src: 'deployment',
      systemId: id,
      syncSnapshot: false,
    };
  }
  const children: Record<string, PersistedChild> = {};
  for (let i = 0; i < shards; i++) {
    const id = shardActorId(i);
    children[id] = {
      snapshot: {
        status: 'active',
        value: {},
        historyValue: {},
        context: { index: i },
        children: shardChildren[id],
      },
      src: 'shard',
      systemId: id,
      syncSnapshot: false,
    };
  }
  return {
    status: 'active',
    value: {},
    historyValue: {},
    context: { shards },
    children,
  };
}

/**
 * Gives every distinct string of the restored contexts one copy. JSON.parse makes a new string
 * for each occurrence of a value: a deployment id sits in its deployment's context and in each
 * replica's and route's, a revision id and an endpoint twice per replica, each state name in
 * every entry; the restored actors keep their contexts, so the copies lived as long as the
 * fleet (a created tree shares them). Only contexts and callback inputs are walked: the rest of
 * a persisted snapshot is let go once the tree runs (settleRestoredTree).
 */
export function internContextStrings(rows: readonly DeploymentSnapshotRow[]): void {
  const seen = new Map<string, string>();
  const intern = (v: string): string => {
    const s = seen.get(v);
    if (s !== undefined) return s;
    seen.set(v, v);
    return v;
  };
  const walk = (o: Record<string, unknown>): void => {
    for (const k in o) {
      const v = o[k];
      if (typeof v === 'string') o[k] = intern(v);
      else if (v && typeof v === 'object') walk(v as Record<string, unknown>);
    }
  };
  const subtree = (snapshot: unknown): void => {
    if (!snapshot || typeof snapshot !== 'object') return;
    const s = snapshot as { context?: unknown; input?: unknown; children?: unknown };
    if (s.context && typeof s.context === 'object') walk(s.context as Record<string, unknown>);
    if (s.input && typeof s.input === 'object') walk(s.input as Record<string, unknown>);
    if (s.children && typeof s.children === 'object') {
      for (const child of Object.values(s.children as Record<string, { snapshot?: unknown }>)) {
        subtree(child?.snapshot);
      }
    }
  };
  for (const row of rows) subtree(row.snapshot);
}

/** A stored deployment row that cannot be restored, and why. */
export interface RejectedSnapshot {
  deploymentId: string;
  err: unknown;
}

/**
 * The deployment rows that can be restored: of a tracked deployment, of this build's schema
 * version, naming a known state (rule 7). The others are returned as rejected (the caller
 * leaves those deployments as stored).
 */
export function restorableDeploymentRows(
  rows: readonly ActorSnapshotRow[],
  isTracked: (deploymentId: string) => boolean,
): { restorable: DeploymentSnapshotRow[]; rejected: RejectedSnapshot[] } {
  const restorable: DeploymentSnapshotRow[] = [];
  const rejected: RejectedSnapshot[] = [];
  for (const row of rows) {
    if (row.kind !== 'deployment' || !isTracked(row.deployment_id)) continue;
    try {
      if (!row.snapshot || typeof row.snapshot !== 'object') {
        throw new SnapshotRejected('snapshot is not an object');
      }
      const { _v, ...snapshot } = row.snapshot as { _v?: unknown };
      if (_v !== SNAPSHOT_SCHEMA_VERSION) {
        throw new SnapshotRejected(
          `snapshot schema ${String(_v)}, this build reads ${SNAPSHOT_SCHEMA_VERSION}`,
        );
      }
      validateDeploymentSnapshot(snapshot);
      restorable.push({ deploymentId: row.deployment_id, snapshot });
    } catch (err) {
      rejected.push({ deploymentId: row.deployment_id, err });
    }
  }
  return { restorable, rejected };
}

/** A replica as a live deployment actor knows it. */
export interface ReconciledReplica {
  replicaId: string;
  deploymentId: string;
  revisionId: string;
  state: string;
}

/** What reconciling sessions needs: the replicas the actors believe in, and the backend. */
export interface SessionReconcileDeps {
  /** Every replica a live deployment actor knows, with its state. */
  replicas(): Iterable<ReconciledReplica>;
  backend: Pick<ReplicaBackend, 'status' | 'list' | 'stop'>;
  /** Tells a replica actor its session is gone. */
  sessionExited(replicaId: string, detail: string): void;
  /**
   * Starts again a session that the last clean shutdown stopped (a planned event, not a
   * failure); resolves to its endpoint, or null when it was not stopped that way.
   */
  resume(replica: ReconciledReplica): Promise<string | null>;
  /** Tells a replica actor its session runs again at `endpoint`. */
  sessionResumed(replicaId: string, endpoint: string): void;
  warn(obj: object, msg: string): void;
}

/**
 * After a restore: a replica that believes its session runs but the backend has none is either
 * started again (the last clean shutdown stopped it: planned, no failure counted) or told its
 * session exited (it then recovers); a backend session no actor owns is stopped, so no orphan
 * survives a crash.
 */
export async function reconcileSessions(deps: SessionReconcileDeps): Promise<void> {
  const known = new Set<string>();
  for (const replica of deps.replicas()) {
    const { replicaId, state } = replica;
    known.add(replicaId);
    if (state === 'HEALTHY' || state === 'UNHEALTHY') {
      const status = await deps.backend.status(replicaId);
      if (status === 'running') continue;
      const endpoint = await deps.resume(replica);
      if (endpoint) deps.sessionResumed(replicaId, endpoint);
      else deps.sessionExited(replicaId, 'session not found after coordinator restart');
    }
  }
  for (const handle of await deps.backend.list()) {
    if (!known.has(handle.replicaId)) {
      deps.warn({ replica: handle.replicaId }, 'stopping a session no replica actor owns');
      await deps.backend.stop(handle.replicaId, 5_000);
    }
  }
}

/**
 * What a restored deployment actor must be told so it follows its stored row again. A command
 * writes the row and tells the actor (update: row first; scale: actor first), and the actor's
 * snapshot reaches PostgreSQL a flush later; a kill in between leaves the restored actor on the
 * old revision or target while the row (what the API shows) has the new one, and nothing would
 * ever move it: the rollout never starts. The row wins (the command was not acknowledged, and
 * the API shows the row), so restore sends the update and/or scale again. Pure; the runtime
 * sends the events after the tree started (runtime.ts, `start`).
 */
export function restoreDriftEvents(
  record: Pick<DeploymentRecord, 'revision_id' | 'target_replicas'>,
  snapshot: {
    value: unknown;
    context: Pick<DeploymentContext, 'revisionId' | 'target' | 'minReplicas' | 'maxReplicas'>;
  },
  /** The stored revision's settings (its health checks), as an update would send them. */
  settings?: Partial<DeploymentSettings>,
): DeploymentEvent[] {
  const top =
    typeof snapshot.value === 'string'
      ? snapshot.value
      : snapshot.value && typeof snapshot.value === 'object'
        ? Object.keys(snapshot.value)[0]
        : undefined;
  const events: DeploymentEvent[] = [];
  const { context } = snapshot;
  // The states that take an update (deployment-commands.ts); DESTROYING refuses it.
  if (
    record.revision_id &&
    record.revision_id !== context.revisionId &&
    (top === 'PENDING' || top === 'PROVISIONING' || top === 'RUNNING' || top === 'ERROR')
  ) {
    events.push({
      type: 'deployment.update',
      revisionId: record.revision_id,
      ...(settings ? { settings } : {}),
    });
  }
  if (
    record.target_replicas !== context.target &&
    (top === 'PENDING' || top === 'PROVISIONING' || top === 'RUNNING') &&
    record.target_replicas >= context.minReplicas &&
    record.target_replicas <= context.maxReplicas
  ) {
    events.push({ type: 'deployment.scale', replicas: record.target_replicas });
  }
  return events;
}

/**
 * After the tree started: a deployment whose first snapshot never reached PostgreSQL starts
 * afresh from its rows; a restored deployment actor behind its stored row (a revision or target
 * written just before a crash, see `restoreDriftEvents`) is sent the command again, so the
 * rollout or scale runs: the row wins.
 */
export function resumeFromRows(
  records: Map<string, DeploymentRecord>,
  restored: ReadonlySet<string>,
  deps: {
    ids: Iterable<string>;
    spawn: (record: DeploymentRecord) => void;
    ref: (deploymentId: string) => DeploymentRef | undefined;
    session: (revisionId: string) => SessionSpec | undefined;
    warn: (obj: object, msg: string) => void;
  },
): void {
  for (const id of deps.ids) {
    const record = records.get(id);
    if (record && !restored.has(id)) deps.spawn(record);
  }
  for (const id of restored) {
    const record = records.get(id);
    const ref = record && deps.ref(id);
    if (!record || !ref) continue;
    const session = record.revision_id ? deps.session(record.revision_id) : undefined;
    const events = restoreDriftEvents(
      record,
      deploymentSnapshotOf(ref),
      session ? { health: healthSettings(session) } : undefined,
    );
    for (const event of events) {
      deps.warn(
        { deployment: id, event },
        'restored actor behind its stored row; sending the command again',
      );
      ref.send(event);
    }
  }
}

/** Top-level deployment states the runtime runs an actor for. */
const LIVE_DEPLOYMENT_STATES: readonly string[] = [
  'PENDING',
  'PROVISIONING',
  'RUNNING',
  'ERROR',
  'DESTROYING',
];

/** What `start` restores: the live rows, the restorable snapshots, the coordinator snapshot. */
export interface RestorePlan {
  records: Map<string, DeploymentRecord>;
  restorable: DeploymentSnapshotRow[];
  rejected: RejectedSnapshot[];
  rows: ActorSnapshotRow[];
  coordinator: unknown;
  /** Which shard holds each restored deployment (and where new ones go). */
  placement: ShardPlacement;
}

/**
 * Reads the rows to restore: every deployment in a live state is tracked; its snapshot is
 * restored when valid, else the deployment is untracked (left as stored). Sessions of the
 * tracked deployments' revisions are generated before any actor starts.
 */
export async function loadRestorePlan(deps: {
  store: Pick<Store, 'listDeployments' | 'loadSnapshots'>;
  tracked: TrackedDeployments;
  sessions: SessionCache;
  /** Configured shard count (a minimum). */
  shards: number;
}): Promise<RestorePlan> {
  const { store, tracked, sessions } = deps;
  const records = new Map<string, DeploymentRecord>();
  for (const r of await store.listDeployments()) {
    if (!LIVE_DEPLOYMENT_STATES.includes(r.state)) continue;
    records.set(r.id, r);
    tracked.track(r);
  }
  // Only the deployment rows' bodies: each carries its subtree (the children's rows would
  // repeat them); the children's rows give their versions and states.
  let rows = await store.loadSnapshots({
    excludeStates: ['TERMINATED'],
    snapshotKinds: ['deployment'],
  });
  const { restorable, rejected } = restorableDeploymentRows(rows, (id) => tracked.has(id));
  internContextStrings(restorable);
  for (const r of rejected) tracked.untrack(r.deploymentId);
  if (rejected.length > 0) {
    // A quarantined deployment keeps its rows whole (its deletion writes them back).
    const ids = new Set(rejected.map((r) => r.deploymentId));
    const whole = await store.loadSnapshots({
      excludeStates: ['TERMINATED'],
      deploymentIds: [...ids],
    });
    rows = [...rows.filter((r) => !ids.has(r.deployment_id)), ...whole];
  }
  // Revisions of the fleet in one read, then any the read did not find (sessionFor says why).
  const revisionIds = Array.from(tracked.ids(), (id) => records.get(id)?.revision_id);
  const wanted = revisionIds.filter((r): r is string => !!r);
  await sessions.prefetch(wanted);
  for (const revisionId of wanted) await sessions.sessionFor(revisionId);
  const placement = new ShardPlacement(
    deps.shards,
    restorable.map((r) => r.deploymentId),
  );
  const coordinator = assembleCoordinatorSnapshot(placement, restorable);
  return { records, restorable, rejected, rows, coordinator, placement };
}
