/**
 * Records each transition of an actor: the history row and snapshot (through the snapshot
 * writer), the routing change of its deployment, and the change event for listeners.
 */
import type { RuntimeLogger } from './runtime-deps.ts';
import type { SnapshotWriter } from './snapshot-writer.ts';

export interface ChangeEvent {
  kind: 'deployment' | 'replica' | 'route';
  actor_id: string;
  deployment_id: string;
  from: string | null;
  to: string;
  reason: string | null;
  at: string;
}

/** A transition to record (history row, change listeners, routing table). */
export interface TransitionRecord {
  actorId: string;
  kind: 'deployment' | 'replica' | 'route';
  deploymentId: string;
  to: string;
  reason: string | null;
  replica?: { revisionId: string; endpoint: string | null; info: unknown };
  route?: { replicaId: string; weight: number; lastHealth: unknown; reason: string | null };
}

export interface TransitionRecorderDeps {
  writer: Pick<SnapshotWriter, 'record' | 'lastKnownState'>;
  now: () => number;
  /** The deployment's routing entry may have changed. */
  deploymentChanged(deploymentId: string): void;
  log: RuntimeLogger;
}

export class TransitionRecorder {
  private readonly listeners = new Set<(e: ChangeEvent) => void>();

  constructor(private readonly deps: TransitionRecorderDeps) {}

  /** Every transition of every actor, as it is recorded. */
  onChange(listener: (e: ChangeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  record(t: TransitionRecord): void {
    const at = new Date(this.deps.now());
    const from = this.deps.writer.lastKnownState(t.actorId) ?? null;
    this.deps.writer.record({ ...t, event: 'transition', at });
    this.deps.deploymentChanged(t.deploymentId);
    if (this.listeners.size === 0) return;
    const e: ChangeEvent = {
      kind: t.kind,
      actor_id: t.actorId,
      deployment_id: t.deploymentId,
      from,
      to: t.to,
      reason: t.reason,
      at: at.toISOString(),
    };
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        this.deps.log.warn({ err }, 'change listener threw');
      }
    }
  }
}
