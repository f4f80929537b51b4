/**
 * What `get`/`list` return for a deployment: from the live actors when it runs here, from the
 * stored projections when it does not (TERMINATED). Also the one line saying why a deployment
 * is not RUNNING, which `flotilla status` shows.
 */
import {
  crashLoopDelayS,
  type DeploymentContext,
  replicaActorId,
  routeActorId,
} from '../../machines/deployment.ts';
import { CAPACITY_WAIT_REASON, type ReplicaContext } from '../../machines/replica.ts';
import type { RouteContext } from '../../machines/route.ts';
import type { ModelRevisionSpec } from '../domain/revision.ts';
import type { AdmissionSettings, RoutingConfig } from '../domain/routing.ts';
import type { SessionSpec } from '../domain/session.ts';
import type {
  DeploymentRecord,
  ReplicaRecord,
  RevisionRecord,
  RouteRecord,
  Store,
} from '../store/store.ts';
import { type DeploymentRef, deploymentSnapshotOf } from './actor-refs.ts';
import { type DeploymentOptions, optionsOf } from './deployment-options.ts';
import { topState } from './snapshot-writer.ts';

export interface ReplicaView {
  id: string;
  state: string;
  endpoint: string | null;
  revision_id: string;
  route_id: string;
  reason: string | null;
  restarts: number;
  /** The state with its step, e.g. `UNHEALTHY.backoff` or `STARTING.delayed`. */
  phase: string;
  /** When the current step's deadline falls (backoff end, startup timeout...), or null. */
  deadline_at: string | null;
}

export interface RouteView {
  id: string;
  replica_id: string;
  state: string;
  weight: number;
  last_health: { class: string; reason: string; at: string } | null;
  reason: string | null;
  /** When the route's current step ends (the drain deadline while TERMINATING), or null. */
  deadline_at?: string | null;
}

export interface DeploymentView {
  id: string;
  name: string;
  state: string;
  /** Why the deployment is not RUNNING (null when it is, and nothing is wrong). */
  reason: string | null;
  /** Scale to zero (policy `scale_to_zero_after_s`); absent when the policy does not say it. */
  scale_to_zero?: { after_s: number; at_zero: boolean; message: string | null };
  /** When the deployment's current step ends (provisioning timeout, retry), or null. */
  deadline_at?: string | null;
  runtime_variant: string;
  target_replicas: number;
  current_replicas: number;
  healthy_replicas: number;
  min_replicas: number;
  max_replicas: number;
  revision_id: string | null;
  revision: ModelRevisionSpec | null;
  session: SessionSpec | null;
  routing: RoutingConfig;
  /** Admission settings given for this deployment (the proxy's defaults fill the rest). */
  admission: AdmissionSettings;
  scaling_group: string;
  replicas: ReplicaView[];
  routes: RouteView[];
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
  /** The autoscaler's view (README "Autoscaling"); absent without a scaling_policy. */
  autoscaling?: {
    metric: string;
    state: 'active' | 'waiting' | 'paused';
    last: string | null;
    panic_until: string | null;
  };
}

/** The fields that come from the stored record and revision. */
export type ViewBase = Omit<
  DeploymentView,
  | 'state'
  | 'reason'
  | 'current_replicas'
  | 'healthy_replicas'
  | 'replicas'
  | 'routes'
  | 'autoscaling'
>;

type ChildSnapshot = { value: unknown; context: unknown } | undefined;

/** The fields of a view that come from the stored rows. */
export function viewBase(
  record: DeploymentRecord,
  options: DeploymentOptions,
  revision: RevisionRecord | null,
): ViewBase {
  return {
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
}

export function storedView(
  base: ViewBase,
  state: string,
  reason: string | null,
  replicas: ReplicaRecord[],
  routes: RouteRecord[],
): DeploymentView {
  const live = replicas.filter((r) => r.state !== 'TERMINATED');
  return {
    ...base,
    state,
    reason: state === 'RUNNING' && !reason?.startsWith('quarantined:') ? null : reason,
    current_replicas: live.length,
    healthy_replicas: live.filter((r) => r.state === 'HEALTHY').length,
    replicas: replicas.map((r) => ({
      id: r.id,
      state: r.state,
      endpoint: r.endpoint,
      revision_id: r.revision_id,
      route_id: routes.find((t) => t.replica_id === r.id)?.id ?? '',
      reason: null,
      restarts: Number((r.info as { restarts?: number } | null)?.restarts ?? 0),
      phase: r.state,
      deadline_at: null,
    })),
    routes: routes.map((t) => ({
      id: t.id,
      replica_id: t.replica_id,
      state: t.state,
      weight: t.weight,
      last_health: lastHealthView(t.last_health),
      reason: t.reason,
    })),
  };
}

export function liveView(
  base: ViewBase,
  snap: { value: unknown; context: DeploymentContext },
  child: (systemId: string) => ChildSnapshot,
  now: number = Date.now(),
): DeploymentView {
  const ctx = snap.context;
  const state = topState(snap.value);
  const replicas: ReplicaView[] = [];
  const routes: RouteView[] = [];
  for (const [replicaId, r] of Object.entries(ctx.replicas)) {
    const rep = child(replicaActorId(replicaId));
    const rc = rep?.context as ReplicaContext | undefined;
    replicas.push({
      id: replicaId,
      state: rep ? topState(rep.value) : r.state,
      endpoint: rc?.endpoint ?? r.endpoint,
      revision_id: r.revisionId,
      route_id: r.routeId,
      reason: rc?.reason ?? null,
      restarts: rc?.restarts ?? 0,
      phase: rep ? phaseOf(rep.value) : r.state,
      deadline_at: rc?.deadline
        ? new Date(rc.deadline).toISOString()
        : rc?.startNotBefore && rc.startNotBefore > now
          ? new Date(rc.startNotBefore).toISOString()
          : null,
    });
    const route = child(routeActorId(r.routeId));
    if (route) {
      const tc = route.context as RouteContext;
      routes.push({
        id: r.routeId,
        replica_id: replicaId,
        state: topState(route.value),
        weight: tc.weight,
        last_health: lastHealthView(tc.lastHealth),
        reason: tc.reason,
        deadline_at: tc.deadline ? new Date(tc.deadline).toISOString() : null,
      });
    }
  }
  const crashLoop =
    ctx.crashLoops > 0 && state !== 'ERROR'
      ? `crash loop: ${ctx.crashLoops} replica(s) in a row failed recovery; new replicas start after a ${crashLoopDelayS(ctx.crashLoops, ctx.settings)} s backoff`
      : null;
  return {
    ...base,
    state,
    deadline_at: ctx.deadline ? new Date(ctx.deadline).toISOString() : null,
    target_replicas: ctx.target,
    reason: explain(
      state,
      [ctx.reason, crashLoop].filter(Boolean).join('; ') || null,
      replicas,
      routes,
      ctx.target,
    ),
    current_replicas: replicas.filter((r) => r.state !== 'TERMINATING' && r.state !== 'TERMINATED')
      .length,
    healthy_replicas: replicas.filter((r) => r.state === 'HEALTHY').length,
    replicas,
    routes,
  };
}

function phaseOf(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const [k, v] = Object.entries(value)[0] ?? ['UNKNOWN', ''];
    const rest = phaseOf(v);
    return rest ? `${k}.${rest}` : k;
  }
  return '';
}

function lastHealthView(v: unknown): RouteView['last_health'] {
  const h = v as { class?: string; reason?: string; at?: number } | null;
  if (!h || typeof h.class !== 'string') return null;
  return { class: h.class, reason: h.reason ?? '', at: new Date(h.at ?? 0).toISOString() };
}

/** One line saying why a deployment is not RUNNING, or what is wrong while it is. */
function explain(
  state: string,
  reason: string | null,
  replicas: ReplicaView[],
  routes: RouteView[],
  target: number,
): string | null {
  const healthy = replicas.filter((r) => r.state === 'HEALTHY').length;
  // A capacity wait leads: it is why the deployment is short, and it is not a failure.
  const waits = replicas.filter((r) => r.reason?.startsWith(CAPACITY_WAIT_REASON));
  const problems = replicas
    .filter((r) => r.reason && r.state !== 'HEALTHY' && !waits.includes(r))
    .map((r) => `${r.id}: ${r.reason}`);
  const routeProblems = routes
    .filter((t) => t.state === 'DEGRADED' || t.state === 'UNHEALTHY')
    .map((t) => `${t.id} ${t.state}: ${t.last_health?.reason ?? t.reason ?? 'unknown'}`);
  const parts: string[] = [];
  if (waits[0]) {
    parts.push(
      `${waits[0].reason}${waits.length > 1 ? ` (${waits.length} replicas waiting)` : ''}`,
    );
  }
  if (reason) parts.push(reason);
  if (
    state === 'RUNNING' &&
    healthy >= target &&
    problems.length === 0 &&
    waits.length === 0 &&
    routeProblems.length === 0
  ) {
    return null;
  }
  if (state !== 'TERMINATED' && state !== 'DESTROYING') {
    parts.push(`${healthy} of ${target} replicas HEALTHY`);
  }
  parts.push(...problems, ...routeProblems);
  return parts.length ? parts.join('; ') : null;
}

/** What building a view reads besides the stored deployment row. */
export interface ViewSources {
  store: Pick<Store, 'listReplicas' | 'listRoutes'>;
  revision(revisionId: string): Promise<RevisionRecord | null>;
  /** The live deployment actor, when it runs here. */
  live: DeploymentRef | undefined;
  child: (systemId: string) => ChildSnapshot;
  now: number;
  /** Why the deployment is quarantined (its snapshot was not restorable), if it is. */
  quarantined?: string | undefined;
  /** Set while reconciliation is paused for the store (store-pause.ts): shown as the reason. */
  paused?: string | null | undefined;
}

/** The view of a deployment: from its live actors when it runs here, else from the rows. */
export async function deploymentView(
  record: DeploymentRecord,
  src: ViewSources,
): Promise<DeploymentView> {
  const revision = record.revision_id ? await src.revision(record.revision_id) : null;
  const base = viewBase(record, optionsOf(record), revision);
  if (src.live) {
    const v = liveView(base, deploymentSnapshotOf(src.live), src.child, src.now);
    if (!src.paused) return v;
    return { ...v, reason: v.reason ? `${src.paused}; ${v.reason}` : src.paused };
  }
  const [replicas, routes] = await Promise.all([
    src.store.listReplicas(record.id),
    src.store.listRoutes(record.id),
  ]);
  const reason = src.quarantined ? `quarantined: ${src.quarantined}` : record.reason;
  return storedView(base, record.state, reason, replicas, routes);
}
