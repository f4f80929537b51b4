/**
 * A restart is not a failure (issue 12): replicas Flotilla itself stopped at a clean shutdown
 * (`close` without keepReplicas) are started again at the next start as a planned event. The
 * backend keeps the "stopped by shutdown" marker with the replica's record
 * (ReplicaBackend.stoppedAtShutdown); the history says so on both sides, and the replica
 * actor takes the new endpoint without a transition (`replica.session.resumed`), so no
 * failure and no restart is counted.
 */
import { replicaActorId } from '../../machines/deployment.ts';
import type { ReplicaBackend } from '../backends/backend.ts';
import type { SessionSpec } from '../domain/session.ts';
import type { Store } from '../store/store.ts';

export const SHUTDOWN_STOP_EVENT = 'session stopped by a planned shutdown';
export const SHUTDOWN_RESUME_EVENT = 'session started again after a planned shutdown';

export interface ShutdownReplica {
  replicaId: string;
  deploymentId: string;
  state: string;
}

/** History rows for the replicas a clean shutdown is about to stop. */
export async function recordShutdownStops(
  store: Pick<Store, 'recordEvents'>,
  replicas: ShutdownReplica[],
): Promise<void> {
  const at = new Date();
  await store.recordEvents(
    replicas.map((r) => ({
      actorId: replicaActorId(r.replicaId),
      kind: 'replica' as const,
      deploymentId: r.deploymentId,
      state: r.state,
      event: 'shutdown',
      reason: SHUTDOWN_STOP_EVENT,
      at,
    })),
  );
}

/**
 * Starts a replica the last shutdown stopped; returns its endpoint, or null when it was not
 * stopped by a shutdown (or cannot start now: the caller then treats it as an exit).
 */
export async function resumeAfterShutdown(
  deps: { backend: ReplicaBackend; store: Pick<Store, 'recordEvents'> },
  replica: ShutdownReplica,
  spec: () => Promise<SessionSpec>,
): Promise<string | null> {
  const { backend, store } = deps;
  if (!backend.stoppedAtShutdown || !(await backend.stoppedAtShutdown(replica.replicaId))) {
    return null;
  }
  try {
    const handle = await backend.start(replica.replicaId, await spec());
    await store.recordEvents([
      {
        actorId: replicaActorId(replica.replicaId),
        kind: 'replica',
        deploymentId: replica.deploymentId,
        state: replica.state,
        event: 'resume',
        reason: SHUTDOWN_RESUME_EVENT,
        at: new Date(),
      },
    ]);
    return handle.url;
  } catch {
    return null;
  }
}
