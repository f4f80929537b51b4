/**
 * Every statement the store runs, as plain functions returning text + values (pg-boss's
 * plans.ts style), so each one can be read, explained and tested on its own. Values are bound
 * as text: JSON goes in as a string with a `::jsonb` cast, timestamps as ISO strings. Both
 * adapters (pg and PGlite) then bind them identically.
 */
import type { DeploymentPatch, TransitionRow } from './store.ts';

export interface Statement {
  text: string;
  values: unknown[];
}

const json = (v: unknown): string => JSON.stringify(v ?? null);

export function insertDeploymentWithRevision(d: {
  id: string;
  name: string;
  runtime_variant: string;
  spec: unknown;
  target_replicas: number;
  state: string;
  revision: { id: string; number: number; spec: unknown; session: unknown };
}): Statement {
  // One statement, so the deployment and its first revision commit together or not at all.
  return {
    text: `WITH d AS (
             INSERT INTO deployments (id, name, runtime_variant, spec, revision_id, target_replicas, state)
             VALUES ($1, $2, $3, $4::text::jsonb, $5, $6, $7)
             RETURNING *
           ), r AS (
             INSERT INTO revisions (id, deployment_id, number, spec, session)
             SELECT $5, d.id, $8, $9::text::jsonb, $10::text::jsonb FROM d
           )
           SELECT * FROM d`,
    values: [
      d.id,
      d.name,
      d.runtime_variant,
      json(d.spec),
      d.revision.id,
      d.target_replicas,
      d.state,
      d.revision.number,
      json(d.revision.spec),
      json(d.revision.session),
    ],
  };
}

/** By id, else the live deployment of that name, else the most recently deleted one. */
export function selectDeployment(idOrName: string): Statement {
  return {
    text: `SELECT * FROM deployments
            WHERE id = $1 OR name = $1
            ORDER BY (id = $1) DESC, (deleted_at IS NULL) DESC, deleted_at DESC
            LIMIT 1`,
    values: [idOrName],
  };
}

export function selectDeployments(includeDeleted: boolean): Statement {
  return {
    text: `SELECT * FROM deployments
            ${includeDeleted ? '' : 'WHERE deleted_at IS NULL'}
            ORDER BY created_at, id`,
    values: [],
  };
}

export function updateDeployment(id: string, patch: DeploymentPatch): Statement {
  const sets: string[] = [];
  const values: unknown[] = [id];
  const set = (column: string, value: unknown, cast = '') => {
    values.push(value);
    sets.push(`${column} = $${values.length}${cast}`);
  };
  if (patch.target_replicas !== undefined) set('target_replicas', patch.target_replicas);
  if (patch.spec !== undefined) set('spec', json(patch.spec), '::text::jsonb');
  if (patch.revision_id !== undefined) set('revision_id', patch.revision_id);
  if (patch.state !== undefined) set('state', patch.state);
  if (patch.reason !== undefined) set('reason', patch.reason);
  if (patch.deleted_at !== undefined) {
    const at = patch.deleted_at;
    set('deleted_at', at instanceof Date ? at.toISOString() : at, '::timestamptz');
  }
  if (patch.last_scaled_at !== undefined) {
    set('last_scaled_at', patch.last_scaled_at?.toISOString() ?? null, '::timestamptz');
  }
  sets.push('updated_at = now()');
  return {
    text: `UPDATE deployments SET ${sets.join(', ')} WHERE id = $1 RETURNING *`,
    values,
  };
}

export function insertRevision(r: {
  id: string;
  deployment_id: string;
  number: number;
  spec: unknown;
  session: unknown;
}): Statement {
  return {
    text: `INSERT INTO revisions (id, deployment_id, number, spec, session)
           VALUES ($1, $2, $3, $4::text::jsonb, $5::text::jsonb)`,
    values: [r.id, r.deployment_id, r.number, json(r.spec), json(r.session)],
  };
}

export function selectRevision(id: string): Statement {
  return { text: 'SELECT * FROM revisions WHERE id = $1', values: [id] };
}

/** The revisions of these ids, in one statement (restore reads every live one). */
export function selectRevisionsById(ids: readonly string[]): Statement {
  return {
    text: 'SELECT * FROM revisions WHERE id IN (SELECT jsonb_array_elements_text($1::text::jsonb))',
    values: [json(ids)],
  };
}

export function selectRevisions(deploymentId: string): Statement {
  return {
    text: 'SELECT * FROM revisions WHERE deployment_id = $1 ORDER BY number',
    values: [deploymentId],
  };
}

/** One actor's writes of a batch, coalesced (see `writeActors`). */
export interface CoalescedWrite {
  actor_id: string;
  kind: string;
  deployment_id: string;
  parent_id: string | null;
  state: string;
  snapshot: unknown;
  expected_version: number;
  new_version: number;
  has_transition: boolean;
  transition_reason: string | null;
  has_replica: boolean;
  revision_id: string | null;
  endpoint: string | null;
  info: unknown;
  has_route: boolean;
  replica_id: string | null;
  weight: number | null;
  last_health: unknown;
  route_reason: string | null;
}

/** A history row as written: a TransitionRow before it has an id, `seq` its place in the batch. */
export type HistoryRow = Omit<TransitionRow, 'id'> & { seq: number };

/**
 * A whole batch of actor writes as ONE statement, hence one round trip and one transaction
 * whatever its size. Data-modifying CTEs all run to completion; the history and projection
 * writes join on `applied` (the RETURNING of the snapshot writes), so an actor whose version
 * check fails gets none of its rows written. Under READ COMMITTED a concurrent writer of the
 * same row makes the UPDATE re-check `version` against the committed row, so two writers
 * with the same expected version cannot both win. Idempotent: an actor whose row already
 * holds this very write (its new version, state and snapshot) is not a conflict and gets
 * nothing written again (`already`) — the retry of a batch that committed but whose answer
 * was lost (a client-side timeout) succeeds instead of conflicting, with no history row
 * twice (`already` looks only at actors this statement did not write). History rows
 * are inserted ORDER BY seq; PostgreSQL evaluates the bigserial default after the sort
 * (volatile target-list functions run above the Sort node since 9.6), so ids follow batch
 * order.
 */
export function writeActorBatch(writes: CoalescedWrite[], history: HistoryRow[]): Statement {
  return {
    text: `WITH w AS (
      SELECT * FROM jsonb_to_recordset($1::text::jsonb) AS x(
        actor_id text, kind text, deployment_id text, parent_id text, state text,
        snapshot jsonb, expected_version bigint, new_version bigint,
        has_transition boolean, transition_reason text,
        has_replica boolean, revision_id text, endpoint text, info jsonb,
        has_route boolean, replica_id text, weight double precision, last_health jsonb,
        route_reason text)
    ), updated AS (
      UPDATE actor_snapshots s
         SET state = w.state, snapshot = w.snapshot, parent_id = w.parent_id,
             version = w.new_version, updated_at = now()
        FROM w
       WHERE w.expected_version > 0 AND s.actor_id = w.actor_id
         AND s.version = w.expected_version
      RETURNING s.actor_id
    ), inserted AS (
      INSERT INTO actor_snapshots
             (actor_id, kind, parent_id, deployment_id, state, snapshot, version, updated_at)
      SELECT actor_id, kind, parent_id, deployment_id, state, snapshot, new_version, now()
        FROM w WHERE expected_version = 0
      ON CONFLICT (actor_id) DO NOTHING
      RETURNING actor_id
    ), applied AS (
      SELECT actor_id FROM updated UNION ALL SELECT actor_id FROM inserted
    ), already AS (
      SELECT s.actor_id FROM w JOIN actor_snapshots s ON s.actor_id = w.actor_id
       WHERE w.actor_id NOT IN (SELECT actor_id FROM applied)
         AND s.version = w.new_version AND s.state = w.state AND s.snapshot = w.snapshot
    ), aw AS (
      SELECT w.* FROM w JOIN applied USING (actor_id)
    ), history AS (
      INSERT INTO transitions
             (actor_id, kind, deployment_id, from_state, to_state, event, reason, at)
      SELECT h.actor_id, h.kind, h.deployment_id, h.from_state, h.to_state, h.event, h.reason, h.at
        FROM jsonb_to_recordset($2::text::jsonb) AS h(
               seq integer, actor_id text, kind text, deployment_id text, from_state text,
               to_state text, event text, reason text, at timestamptz)
       WHERE h.actor_id IN (SELECT actor_id FROM applied)
       ORDER BY h.seq
      RETURNING 1
    ), replica_upsert AS (
      INSERT INTO replicas AS r
             (id, deployment_id, revision_id, state, endpoint, info, created_at, updated_at)
      SELECT actor_id, deployment_id, revision_id, state, endpoint, coalesce(info, '{}'),
             now(), now()
        FROM aw WHERE kind = 'replica' AND has_replica
      ON CONFLICT (id) DO UPDATE
         SET revision_id = excluded.revision_id, state = excluded.state,
             endpoint = excluded.endpoint, info = excluded.info, updated_at = now()
      RETURNING 1
    ), replica_state AS (
      UPDATE replicas r SET state = aw.state, updated_at = now()
        FROM aw WHERE aw.kind = 'replica' AND NOT aw.has_replica AND r.id = aw.actor_id
      RETURNING 1
    ), route_upsert AS (
      INSERT INTO routes AS r
             (id, deployment_id, replica_id, state, weight, last_health, reason,
              created_at, updated_at)
      SELECT actor_id, deployment_id, replica_id, state, coalesce(weight, 1), last_health,
             route_reason, now(), now()
        FROM aw WHERE kind = 'route' AND has_route
      ON CONFLICT (id) DO UPDATE
         SET replica_id = excluded.replica_id, state = excluded.state,
             weight = excluded.weight, last_health = excluded.last_health,
             reason = excluded.reason, updated_at = now()
      RETURNING 1
    ), route_state AS (
      UPDATE routes r SET state = aw.state, updated_at = now()
        FROM aw WHERE aw.kind = 'route' AND NOT aw.has_route AND r.id = aw.actor_id
      RETURNING 1
    ), deployment_state AS (
      UPDATE deployments d
         SET state = aw.state,
             reason = CASE WHEN aw.has_transition THEN aw.transition_reason ELSE d.reason END,
             updated_at = now()
        FROM aw WHERE aw.kind = 'deployment' AND d.id = aw.deployment_id
      RETURNING 1
    )
    SELECT actor_id FROM w
     WHERE actor_id NOT IN (SELECT actor_id FROM applied)
       AND actor_id NOT IN (SELECT actor_id FROM already)`,
    values: [JSON.stringify(writes), JSON.stringify(history)],
  };
}

export function selectSnapshots(opts: {
  kinds?: string[];
  excludeStates?: string[];
  deploymentIds?: readonly string[];
  snapshotKinds?: readonly string[];
}): Statement {
  const where: string[] = [];
  const values: unknown[] = [];
  if (opts.kinds !== undefined) {
    values.push(json(opts.kinds));
    where.push(`s.kind IN (SELECT jsonb_array_elements_text($${values.length}::text::jsonb))`);
  }
  if (opts.excludeStates !== undefined && opts.excludeStates.length > 0) {
    values.push(json(opts.excludeStates));
    const p = `$${values.length}::text::jsonb`;
    where.push(`s.state NOT IN (SELECT jsonb_array_elements_text(${p}))`);
    where.push(`(d.state IS NULL OR d.state NOT IN (SELECT jsonb_array_elements_text(${p})))`);
  }
  if (opts.deploymentIds !== undefined) {
    values.push(json(opts.deploymentIds));
    where.push(
      `s.deployment_id IN (SELECT jsonb_array_elements_text($${values.length}::text::jsonb))`,
    );
  }
  let snapshot = 's.snapshot';
  if (opts.snapshotKinds !== undefined) {
    values.push(json(opts.snapshotKinds));
    snapshot = `CASE WHEN s.kind IN (SELECT jsonb_array_elements_text($${values.length}::text::jsonb))
                     THEN s.snapshot END AS snapshot`;
  }
  // Parents before children: a deployment's row, then its replicas, then its routes.
  return {
    text: `SELECT s.actor_id, s.kind, s.parent_id, s.deployment_id, s.state, ${snapshot},
                  s.version, s.updated_at
             FROM actor_snapshots s
             LEFT JOIN deployments d ON d.id = s.deployment_id
            ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
            ORDER BY s.deployment_id,
                     CASE s.kind WHEN 'deployment' THEN 0 WHEN 'replica' THEN 1 ELSE 2 END,
                     s.actor_id`,
    values,
  };
}

export function selectReplicas(deploymentId: string): Statement {
  return {
    text: 'SELECT * FROM replicas WHERE deployment_id = $1 ORDER BY id',
    values: [deploymentId],
  };
}

export function selectRoutes(deploymentId: string): Statement {
  return {
    text: 'SELECT * FROM routes WHERE deployment_id = $1 ORDER BY id',
    values: [deploymentId],
  };
}

/** History rows for events that are not state changes (from_state = to_state). */
export function insertEvents(
  rows: Array<{
    actorId: string;
    kind: string;
    deploymentId: string;
    state: string;
    event: string;
    reason: string | null;
    at: string;
  }>,
): Statement {
  return {
    text: `INSERT INTO transitions (actor_id, kind, deployment_id, from_state, to_state, event, reason, at)
           SELECT e.actor_id, e.kind, e.deployment_id, e.state, e.state, e.event, e.reason, e.at
             FROM jsonb_to_recordset($1::text::jsonb) AS e(
                    seq integer, actor_id text, kind text, deployment_id text, state text,
                    event text, reason text, at timestamptz)
            ORDER BY e.seq`,
    values: [
      json(
        rows.map((r, seq) => ({
          seq,
          actor_id: r.actorId,
          kind: r.kind,
          deployment_id: r.deploymentId,
          state: r.state,
          event: r.event,
          reason: r.reason,
          at: r.at,
        })),
      ),
    ],
  };
}

/** Fetches limit + 1 rows: the extra one only tells whether there is a next page. */
export function selectHistory(opts: {
  deploymentId?: string;
  actorId?: string;
  after?: number;
  limit: number;
}): Statement {
  const where: string[] = [];
  const values: unknown[] = [];
  if (opts.deploymentId !== undefined) {
    values.push(opts.deploymentId);
    where.push(`deployment_id = $${values.length}`);
  }
  if (opts.actorId !== undefined) {
    values.push(opts.actorId);
    where.push(`actor_id = $${values.length}`);
  }
  if (opts.after !== undefined) {
    values.push(opts.after);
    where.push(`id > $${values.length}`);
  }
  values.push(opts.limit + 1);
  return {
    text: `SELECT * FROM transitions
            ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
            ORDER BY id LIMIT $${values.length}`,
    values,
  };
}

export function selectScalingGroup(name: string): Statement {
  return { text: 'SELECT * FROM scaling_groups WHERE name = $1', values: [name] };
}

export function upsertScalingGroup(g: {
  name: string;
  route_cleanup_target_statuses: string[];
  settings: unknown;
}): Statement {
  return {
    text: `INSERT INTO scaling_groups (name, route_cleanup_target_statuses, settings, updated_at)
           VALUES ($1, $2::text::jsonb, $3::text::jsonb, now())
           ON CONFLICT (name) DO UPDATE
              SET route_cleanup_target_statuses = excluded.route_cleanup_target_statuses,
                  settings = excluded.settings, updated_at = now()
           RETURNING *`,
    values: [g.name, json(g.route_cleanup_target_statuses), json(g.settings)],
  };
}

export function selectEndpoint(name: string): Statement {
  return { text: 'SELECT * FROM endpoints WHERE name = $1', values: [name] };
}

export function selectEndpoints(): Statement {
  return { text: 'SELECT * FROM endpoints ORDER BY name', values: [] };
}

export function upsertEndpoint(e: { name: string; backends: unknown }): Statement {
  return {
    text: `INSERT INTO endpoints (name, backends, created_at, updated_at)
           VALUES ($1, $2::text::jsonb, now(), now())
           ON CONFLICT (name) DO UPDATE SET backends = excluded.backends, updated_at = now()
           RETURNING *`,
    values: [e.name, json(e.backends)],
  };
}

export function deleteEndpoint(name: string): Statement {
  return { text: 'DELETE FROM endpoints WHERE name = $1 RETURNING name', values: [name] };
}
