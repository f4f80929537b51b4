/**
 * Quarantine (issue 12, "no stuck deployments"): a deployment whose snapshot is rejected at
 * restore (schema version, unknown state, invalid shape) is not silently dropped. It is kept
 * here with the reason, listed with it, reported by `/ready` as a warning (the coordinator
 * still serves every other deployment, so it stays ready), refuses scale and update with 409,
 * and can be deleted: its replicas are stopped and every row of it is marked TERMINATED.
 */
import { replicaIdOf } from '../../machines/deployment.ts';
import type { ReplicaBackend } from '../backends/backend.ts';
import type { ActorSnapshotRow, Store } from '../store/store.ts';

export interface QuarantinedDeployment {
  id: string;
  name: string;
  reason: string;
  /** Its stored actor rows (deployment, replicas, routes), for the deletion. */
  rows: ActorSnapshotRow[];
}

export class Quarantine {
  private readonly entries = new Map<string, QuarantinedDeployment>();

  add(entry: QuarantinedDeployment): void {
    this.entries.set(entry.id, entry);
  }

  /** Quarantines every deployment whose snapshot restore rejected; returns them. */
  addRejected(
    plan: {
      rejected: Array<{ deploymentId: string; err: unknown }>;
      records: Map<string, { name: string }>;
      rows: ActorSnapshotRow[];
    },
    log?: { error(obj: object, msg: string): void },
  ): QuarantinedDeployment[] {
    return plan.rejected.map(({ deploymentId, err }) => {
      const entry: QuarantinedDeployment = {
        id: deploymentId,
        name: plan.records.get(deploymentId)?.name ?? deploymentId,
        reason: `snapshot not restorable: ${err instanceof Error ? err.message : String(err)}`,
        rows: plan.rows.filter((r) => r.deployment_id === deploymentId),
      };
      this.add(entry);
      log?.error(
        { deployment: entry.id, reason: entry.reason },
        'snapshot not restorable; quarantined',
      );
      return entry;
    });
  }

  get(id: string): QuarantinedDeployment | undefined {
    return this.entries.get(id);
  }

  list(): QuarantinedDeployment[] {
    return [...this.entries.values()];
  }

  /** One line per quarantined deployment, for `/ready`. */
  warnings(): string[] {
    return this.list().map(
      (q) =>
        `deployment "${q.name}" (${q.id}) is quarantined: ${q.reason}; delete it or restore it with a matching build`,
    );
  }

  /** Stops its replicas and marks every row TERMINATED (history says why); then forgets it. */
  async remove(
    id: string,
    deps: { store: Store; backend: Pick<ReplicaBackend, 'stop'> },
  ): Promise<void> {
    const q = this.entries.get(id);
    if (!q) return;
    const replicaIds = new Set(
      q.rows.filter((r) => r.kind === 'replica').map((r) => replicaIdOf(r.actor_id)),
    );
    for (const r of await deps.store.listReplicas(id)) {
      if (r.state !== 'TERMINATED') replicaIds.add(replicaIdOf(r.id));
    }
    await Promise.all([...replicaIds].map((rid) => deps.backend.stop(rid, 10_000)));
    const at = new Date();
    const reason = `deleted while quarantined: ${q.reason}`;
    await deps.store.writeActors(
      q.rows.map((r) => ({
        actorId: r.actor_id,
        kind: r.kind,
        deploymentId: r.deployment_id,
        parentId: r.parent_id,
        state: 'TERMINATED',
        snapshot: r.snapshot,
        expectedVersion: r.version,
        transition: { from: r.state, to: 'TERMINATED', event: 'deployment.delete', reason, at },
      })),
    );
    await deps.store.updateDeployment(id, { state: 'TERMINATED', reason, deleted_at: at });
    this.entries.delete(id);
  }
}
