import { FlotillaError } from '../domain/errors.ts';
import type { SessionSpec } from '../domain/session.ts';
import { createEmbeddedExecutor } from './embedded-executor.ts';
import { migrate } from './migrate.ts';
import { createPostgresExecutor, type PostgresTimeouts } from './postgres-executor.ts';
import { column, type Row, rowMapper } from './row-mapper.ts';
import { type SqlExecutor, violatedConstraint } from './sql-executor.ts';
import * as sql from './store-sql.ts';

export type ActorKind = 'deployment' | 'replica' | 'route';

/** A deployment as stored. `spec` is the create request as the user sent it. */
export interface DeploymentRecord {
  id: string;
  name: string;
  runtime_variant: string;
  spec: unknown;
  /** The current revision. */
  revision_id: string | null;
  target_replicas: number;
  /** The deployment actor's state (PENDING ... TERMINATED, ERROR). */
  state: string;
  reason: string | null;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
  /** The last scaling operation, manual or automatic (the autoscaling cooldown), or null. */
  last_scaled_at: string | null;
}

/** One revision of a deployment: the merged ModelRevisionSpec and the SessionSpec from it. */
export interface RevisionRecord {
  id: string;
  deployment_id: string;
  number: number;
  spec: unknown;
  session: SessionSpec;
  created_at: string;
}

/** Projection of a replica actor, kept current by `writeActors`. */
export interface ReplicaRecord {
  id: string;
  deployment_id: string;
  revision_id: string;
  state: string;
  endpoint: string | null;
  info: unknown;
  created_at: string;
  updated_at: string;
}

/** Projection of a route actor, kept current by `writeActors`. */
export interface RouteRecord {
  id: string;
  deployment_id: string;
  replica_id: string;
  state: string;
  weight: number;
  last_health: unknown;
  reason: string | null;
  created_at: string;
  updated_at: string;
}

/** An actor's latest persisted snapshot. `version` counts its successful writes. */
export interface ActorSnapshotRow {
  actor_id: string;
  kind: ActorKind;
  parent_id: string | null;
  deployment_id: string;
  state: string;
  snapshot: unknown;
  version: number;
  updated_at: string;
}

/** One history row. `id` increases in commit order within an actor and serves as a cursor. */
export interface TransitionRow {
  id: number;
  actor_id: string;
  kind: ActorKind;
  deployment_id: string;
  from_state: string | null;
  to_state: string;
  event: string;
  reason: string | null;
  at: string;
}

export interface ScalingGroup {
  name: string;
  /** Route states (lower case, e.g. `unhealthy`, `degraded`) that get a route cleaned up. */
  route_cleanup_target_statuses: string[];
  settings: Record<string, unknown>;
  /** null when the group was never stored and these are the defaults. */
  updated_at: string | null;
}

export interface EndpointBackend {
  deployment: string;
  weight: number;
}

export interface EndpointRecord {
  name: string;
  backends: EndpointBackend[];
  created_at: string;
  updated_at: string;
}

/** One persisted transition (or plain snapshot update) of one actor. */
export interface ActorWrite {
  actorId: string;
  kind: ActorKind;
  deploymentId: string;
  parentId: string | null;
  state: string;
  snapshot: unknown;
  /** The version the writer last saw; 0 means the actor is new and must not exist yet. */
  expectedVersion: number;
  transition?: {
    from: string | null;
    to: string;
    event: string;
    reason: string | null;
    at: Date;
  };
  /** Replica projection fields (kind 'replica'); without them only the state is projected. */
  replica?: { revisionId: string; endpoint: string | null; info: unknown };
  /** Route projection fields (kind 'route'); without them only the state is projected. */
  route?: { replicaId: string; weight: number; lastHealth: unknown; reason: string | null };
}

export interface CreateDeploymentInput {
  id: string;
  name: string;
  runtime_variant: string;
  spec: unknown;
  target_replicas: number;
  /** Defaults to PENDING. */
  state?: string;
  revision: { id: string; number: number; spec: unknown; session: SessionSpec };
}

export interface DeploymentPatch {
  target_replicas?: number;
  spec?: unknown;
  revision_id?: string;
  state?: string;
  /** null clears it; undefined leaves it. */
  reason?: string | null;
  deleted_at?: Date | string | null;
  /** null clears it; undefined leaves it. */
  last_scaled_at?: Date | null;
}

/**
 * Flotilla's durable state. Every method is atomic (one transaction) and every failure is a
 * FlotillaError. Both adapters (PostgreSQL and the embedded PGlite) pass one conformance
 * suite, test/integration/store/store-conformance.test.ts.
 */
export interface Store {
  readonly kind: 'postgres' | 'embedded';

  /**
   * Writes the deployment and its first revision together, and sets `revision_id` to it.
   * A live deployment with the same name -> `conflict` (409) with a `name` detail, and
   * nothing is written. Names are unique among non-deleted deployments only.
   */
  createDeployment(d: CreateDeploymentInput): Promise<DeploymentRecord>;
  /** By id, else the live deployment of that name, else the latest deleted one of that name. */
  getDeployment(idOrName: string): Promise<DeploymentRecord | null>;
  /** Oldest first. Deleted (TERMINATED) deployments only with `includeDeleted`. */
  listDeployments(opts?: { includeDeleted?: boolean }): Promise<DeploymentRecord[]>;
  /** Applies the fields present in `patch`; `not_found` when there is no such id. */
  updateDeployment(id: string, patch: DeploymentPatch): Promise<DeploymentRecord>;
  /** `conflict` when the number is taken for that deployment. Does not switch revision_id. */
  addRevision(rev: {
    id: string;
    deployment_id: string;
    number: number;
    spec: unknown;
    session: SessionSpec;
  }): Promise<void>;
  getRevision(id: string): Promise<RevisionRecord | null>;
  /** The revisions of these ids that exist, in one read (any order). */
  getRevisions(ids: readonly string[]): Promise<RevisionRecord[]>;
  /** Every revision of a deployment, by number. */
  listRevisions(deploymentId: string): Promise<RevisionRecord[]>;

  /**
   * Persists a batch of actor writes in ONE transaction and one round trip, whatever its size.
   * For each actor: the snapshot row is written only if its stored version equals the
   * expected version (0: the row must not exist), and then becomes expected + 1; its history
   * rows and its replica/route projection (and `deployments.state` for a deployment actor)
   * are written in the same transaction. An actor may appear several times, in order: its
   * last snapshot wins, every history row is kept in batch order, the version is checked
   * against its FIRST write's expectedVersion and the stored version becomes its last
   * (highest) expectedVersion + 1. An actor that fails the check is returned in `conflicts`
   * and none of its writes are applied; the rest of the batch is. Idempotent: an actor whose
   * stored row already is this write's result (the new version, state and snapshot) is not a
   * conflict and none of its rows are written again, so a batch retried after its answer was
   * lost (it committed) succeeds without duplicating history.
   */
  writeActors(writes: ActorWrite[]): Promise<{ conflicts: string[] }>;
  /**
   * Snapshots in one query, parents first (per deployment: the deployment, its replicas, its
   * routes). `excludeStates` drops rows in those states AND every row of a deployment whose
   * state is one of them, so `{ excludeStates: ['TERMINATED'] }` is what restore reads.
   */
  loadSnapshots(opts?: {
    kinds?: ActorKind[];
    excludeStates?: string[];
    /** Only the rows of these deployments. */
    deploymentIds?: readonly string[];
    /**
     * Kinds whose snapshot body is read (default every kind); the other rows come back with
     * `snapshot: null`. Restore reads only the deployment rows' bodies: each carries its
     * whole subtree, so the replica and route bodies would be read twice.
     */
    snapshotKinds?: readonly ActorKind[];
  }): Promise<ActorSnapshotRow[]>;

  /** Replica projections of a deployment (terminated ones included), by id. */
  listReplicas(deploymentId: string): Promise<ReplicaRecord[]>;
  /** Route projections of a deployment (terminated ones included), by id. */
  listRoutes(deploymentId: string): Promise<RouteRecord[]>;
  /**
   * Transition history, oldest first. `after` is an exclusive cursor (a transition id);
   * `next` is the cursor of the following page, null on the last one. `limit` defaults to
   * 100 and is capped at 1,000.
   */
  /**
   * Appends history rows for events that change no state (e.g. a proxy ejecting a replica):
   * from_state = to_state = the actor's state at the time. No snapshot or version is touched.
   */
  recordEvents(
    events: Array<{
      actorId: string;
      kind: ActorKind;
      deploymentId: string;
      state: string;
      event: string;
      reason: string | null;
      at: Date;
    }>,
  ): Promise<void>;
  history(opts: {
    deploymentId?: string;
    actorId?: string;
    after?: number;
    limit?: number;
  }): Promise<{ items: TransitionRow[]; next: number | null }>;

  /** The stored group, or the defaults (`['unhealthy']`, `{}`) when there is none. */
  getScalingGroup(name: string): Promise<ScalingGroup>;
  /** Creates or replaces; omitted fields take the defaults. */
  putScalingGroup(g: {
    name: string;
    route_cleanup_target_statuses?: string[];
    settings?: Record<string, unknown>;
  }): Promise<ScalingGroup>;

  getEndpoint(name: string): Promise<EndpointRecord | null>;
  listEndpoints(): Promise<EndpointRecord[]>;
  /** Creates or replaces the endpoint's backends; created_at is kept on replace. */
  putEndpoint(e: { name: string; backends: EndpointBackend[] }): Promise<EndpointRecord>;
  /** true when it existed. */
  deleteEndpoint(name: string): Promise<boolean>;

  /** true when the database answers; never throws. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export const DEFAULT_ROUTE_CLEANUP_TARGET_STATUSES: readonly string[] = ['unhealthy'];

const c = column;

const toDeployment = rowMapper<DeploymentRecord>({
  id: c.text,
  name: c.text,
  runtime_variant: c.text,
  spec: c.json,
  revision_id: c.textOrNull,
  target_replicas: c.number,
  state: c.text,
  reason: c.textOrNull,
  created_at: c.iso,
  updated_at: c.iso,
  deleted_at: c.isoOrNull,
  last_scaled_at: c.isoOrNull,
});

const toRevision = rowMapper<RevisionRecord>({
  id: c.text,
  deployment_id: c.text,
  number: c.number,
  spec: c.json,
  session: c.as<SessionSpec>(),
  created_at: c.iso,
});

const toReplica = rowMapper<ReplicaRecord>({
  id: c.text,
  deployment_id: c.text,
  revision_id: c.text,
  state: c.text,
  endpoint: c.textOrNull,
  info: c.json,
  created_at: c.iso,
  updated_at: c.iso,
});

const toRoute = rowMapper<RouteRecord>({
  id: c.text,
  deployment_id: c.text,
  replica_id: c.text,
  state: c.text,
  weight: c.number,
  last_health: c.jsonOrNull,
  reason: c.textOrNull,
  created_at: c.iso,
  updated_at: c.iso,
});

const toSnapshot = rowMapper<ActorSnapshotRow>({
  actor_id: c.text,
  kind: c.as<ActorKind>(),
  parent_id: c.textOrNull,
  deployment_id: c.text,
  state: c.text,
  snapshot: c.json,
  version: c.number,
  updated_at: c.iso,
});

const toTransition = rowMapper<TransitionRow>({
  id: c.number,
  actor_id: c.text,
  kind: c.as<ActorKind>(),
  deployment_id: c.text,
  from_state: c.textOrNull,
  to_state: c.text,
  event: c.text,
  reason: c.textOrNull,
  at: c.iso,
});

const toScalingGroup = rowMapper<ScalingGroup>({
  name: c.text,
  route_cleanup_target_statuses: c.as<string[]>(),
  settings: c.as<Record<string, unknown>>(),
  updated_at: c.iso,
});

const toEndpoint = rowMapper<EndpointRecord>({
  name: c.text,
  backends: c.as<EndpointBackend[]>(),
  created_at: c.iso,
  updated_at: c.iso,
});

/**
 * Folds a batch into one row per actor (first-seen order) plus every history row in batch
 * order. Pure, so the batching rules can be tested without a database.
 */
export function coalesceActorWrites(writes: ActorWrite[]): {
  rows: sql.CoalescedWrite[];
  history: sql.HistoryRow[];
} {
  const byActor = new Map<string, sql.CoalescedWrite>();
  const history: sql.HistoryRow[] = [];
  for (const w of writes) {
    let row = byActor.get(w.actorId);
    if (row === undefined) {
      row = {
        actor_id: w.actorId,
        kind: w.kind,
        deployment_id: w.deploymentId,
        parent_id: w.parentId,
        state: w.state,
        snapshot: w.snapshot,
        expected_version: w.expectedVersion,
        new_version: w.expectedVersion + 1,
        has_transition: false,
        transition_reason: null,
        has_replica: false,
        revision_id: null,
        endpoint: null,
        info: null,
        has_route: false,
        replica_id: null,
        weight: null,
        last_health: null,
        route_reason: null,
      };
      byActor.set(w.actorId, row);
    } else if (row.kind !== w.kind || row.deployment_id !== w.deploymentId) {
      throw new FlotillaError(
        'internal',
        `actor ${w.actorId} written as ${w.kind} of ${w.deploymentId} and as ${row.kind} of ${row.deployment_id} in one batch`,
      );
    }
    row.parent_id = w.parentId;
    row.state = w.state;
    row.snapshot = w.snapshot;
    row.new_version = Math.max(row.new_version, w.expectedVersion + 1);
    if (w.transition !== undefined) {
      row.has_transition = true;
      row.transition_reason = w.transition.reason;
      history.push({
        seq: history.length,
        actor_id: w.actorId,
        kind: w.kind,
        deployment_id: w.deploymentId,
        from_state: w.transition.from,
        to_state: w.transition.to,
        event: w.transition.event,
        reason: w.transition.reason,
        at: w.transition.at.toISOString(),
      });
    }
    if (w.replica !== undefined) {
      row.has_replica = true;
      row.revision_id = w.replica.revisionId;
      row.endpoint = w.replica.endpoint;
      row.info = w.replica.info ?? {};
    }
    if (w.route !== undefined) {
      row.has_route = true;
      row.replica_id = w.route.replicaId;
      row.weight = w.route.weight;
      row.last_health = w.route.lastHealth ?? null;
      row.route_reason = w.route.reason;
    }
  }
  return { rows: [...byActor.values()], history };
}

/** The store on any SqlExecutor. Assumes `migrate(exec)` has run (openStore does it). */
export function createStore(exec: SqlExecutor): Store {
  const run = <T = Row>(s: sql.Statement, on: SqlExecutor = exec, rows?: number) =>
    on.query<T>(
      s.text,
      s.values.length > 0 ? s.values : undefined,
      rows === undefined ? undefined : { rows },
    );

  return {
    kind: exec.kind,

    async createDeployment(d) {
      try {
        const [row] = await run(
          sql.insertDeploymentWithRevision({ ...d, state: d.state ?? 'PENDING' }),
        );
        return toDeployment(row!);
      } catch (err) {
        if (violatedConstraint(err) === 'deployments_live_name_key') {
          throw new FlotillaError('conflict', `deployment "${d.name}" already exists`, {
            details: [{ path: 'name', message: `a live deployment is named "${d.name}"` }],
            cause: err,
          });
        }
        throw err;
      }
    },

    async getDeployment(idOrName) {
      const [row] = await run(sql.selectDeployment(idOrName));
      return row ? toDeployment(row) : null;
    },

    async listDeployments(opts = {}) {
      // The whole fleet (restore, list): the long statement limit, as for loadSnapshots.
      const stmt = sql.selectDeployments(opts.includeDeleted ?? false);
      return (await exec.transaction((tx) => run(stmt, tx))).map(toDeployment);
    },

    async updateDeployment(id, patch) {
      const [row] = await run(sql.updateDeployment(id, patch));
      if (!row) throw new FlotillaError('not_found', `deployment ${id} not found`);
      return toDeployment(row);
    },

    async addRevision(rev) {
      await run(sql.insertRevision(rev));
    },

    async getRevision(id) {
      const [row] = await run(sql.selectRevision(id));
      return row ? toRevision(row) : null;
    },

    async getRevisions(ids) {
      if (ids.length === 0) return [];
      const rows = await exec.transaction((tx) => run(sql.selectRevisionsById(ids), tx));
      return rows.map(toRevision);
    },

    async listRevisions(deploymentId) {
      return (await run(sql.selectRevisions(deploymentId))).map(toRevision);
    },

    async writeActors(writes) {
      if (writes.length === 0) return { conflicts: [] };
      const { rows, history } = coalesceActorWrites(writes);
      const conflicted = await run<{ actor_id: string }>(
        sql.writeActorBatch(rows, history),
        exec,
        rows.length + history.length,
      );
      return { conflicts: conflicted.map((r) => r.actor_id) };
    },

    async loadSnapshots(opts = {}) {
      // A whole-fleet read (restore): inside a transaction, so it gets the long statement limit
      // once BEGIN is answered (tens of MB on a busy machine take longer than the 1 s limit).
      const rows = await exec.transaction((tx) => run(sql.selectSnapshots(opts), tx));
      return rows.map(toSnapshot);
    },

    async listReplicas(deploymentId) {
      return (await run(sql.selectReplicas(deploymentId))).map(toReplica);
    },

    async listRoutes(deploymentId) {
      return (await run(sql.selectRoutes(deploymentId))).map(toRoute);
    },

    async recordEvents(events) {
      if (events.length === 0) return;
      await run(sql.insertEvents(events.map((e) => ({ ...e, at: e.at.toISOString() }))));
    },

    async history(opts) {
      const limit = Math.min(Math.max(Math.trunc(opts.limit ?? 100), 1), 1000);
      const rows = (await run(sql.selectHistory({ ...opts, limit }))).map(toTransition);
      const items = rows.slice(0, limit);
      return { items, next: rows.length > limit ? items[items.length - 1]!.id : null };
    },

    async getScalingGroup(name) {
      const [row] = await run(sql.selectScalingGroup(name));
      if (row) return toScalingGroup(row);
      return {
        name,
        route_cleanup_target_statuses: [...DEFAULT_ROUTE_CLEANUP_TARGET_STATUSES],
        settings: {},
        updated_at: null,
      };
    },

    async putScalingGroup(g) {
      const [row] = await run(
        sql.upsertScalingGroup({
          name: g.name,
          route_cleanup_target_statuses: g.route_cleanup_target_statuses ?? [
            ...DEFAULT_ROUTE_CLEANUP_TARGET_STATUSES,
          ],
          settings: g.settings ?? {},
        }),
      );
      return toScalingGroup(row!);
    },

    async getEndpoint(name) {
      const [row] = await run(sql.selectEndpoint(name));
      return row ? toEndpoint(row) : null;
    },

    async listEndpoints() {
      return (await run(sql.selectEndpoints())).map(toEndpoint);
    },

    async putEndpoint(e) {
      const [row] = await run(sql.upsertEndpoint(e));
      return toEndpoint(row!);
    },

    async deleteEndpoint(name) {
      return (await run(sql.deleteEndpoint(name))).length > 0;
    },

    async ping() {
      try {
        await exec.query('SELECT 1');
        return true;
      } catch {
        return false;
      }
    },

    close: () => exec.close(),
  };
}

/**
 * The composition root's way in: PostgreSQL when `databaseUrl` is given, else the embedded
 * database under `<dataDir>/pgdata`; migrations are applied before the store is returned.
 */
export async function openStore(opts: {
  databaseUrl?: string;
  dataDir: string;
  postgresTimeouts?: PostgresTimeouts;
}): Promise<Store> {
  if (opts.databaseUrl) {
    // Migrations wait on an advisory lock while another process migrates and run DDL: they get
    // their own short-lived connection with generous limits, the serving pool the short ones.
    const migrator = createPostgresExecutor(opts.databaseUrl, {
      max: 1,
      acquireMs: 30_000,
      queryMs: 120_000,
    });
    try {
      await migrate(migrator);
    } finally {
      // Safe to ignore: a migration error is the one to report; closing is best effort.
      await migrator.close().catch(() => {});
    }
    return createStore(createPostgresExecutor(opts.databaseUrl, opts.postgresTimeouts));
  }
  const exec = await createEmbeddedExecutor(opts.dataDir);
  try {
    await migrate(exec);
  } catch (err) {
    // Safe to ignore: the migration error is the one to report; closing is best effort.
    await exec.close().catch(() => {});
    throw err;
  }
  return createStore(exec);
}
