/**
 * Crash loops end (issue 12): the exit of a replica's session is reported with its last lines
 * of output, so the replica's reason, and the deployment's ERROR reason once the crash loop
 * ends (machines/deployment.ts, max_failed_starts), say why it died.
 */
import { replicaIdOf } from '../../machines/deployment.ts';
import type { ReplicaBackend, ReplicaExit } from '../backends/backend.ts';
import type { Store } from '../store/store.ts';

/** Lines of output quoted, and at most this many characters of them. */
export const QUOTED_LINES = 5;
const QUOTED_CHARS = 600;

/** `exit code 3; output: boom` (the output part only when the replica wrote something). */
export async function describeExit(
  backend: Pick<ReplicaBackend, 'logs'>,
  exit: Pick<ReplicaExit, 'replicaId' | 'code' | 'signal'>,
): Promise<string> {
  const how = exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code ?? 'unknown'}`;
  const tail = await lastOutput(backend, exit.replicaId).catch(() => '');
  return tail ? `${how}; output: ${tail}` : how;
}

/** The replica's last lines of output, without Flotilla's own `[flotilla]` lines. */
export async function lastOutput(
  backend: Pick<ReplicaBackend, 'logs'>,
  replicaId: string,
): Promise<string> {
  const text = await backend.logs(replicaId, { tailBytes: 4096 });
  const lines = text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l && !l.startsWith('[flotilla]'));
  const quoted = lines.slice(-QUOTED_LINES).join(' | ');
  return quoted.length > QUOTED_CHARS ? `…${quoted.slice(-QUOTED_CHARS)}` : quoted;
}

/** Exited replicas whose output `logs --previous` shows (and the backend keeps), per deployment. */
export const PREVIOUS_LOGS_KEPT = 5;

/** The deployment's exited replicas, oldest first, the newest PREVIOUS_LOGS_KEPT of them. */
export async function previousReplicaIds(
  store: Pick<Store, 'listReplicas'>,
  deploymentId: string,
  keep = PREVIOUS_LOGS_KEPT,
): Promise<{ kept: string[]; dropped: string[] }> {
  const exited = (await store.listReplicas(deploymentId))
    .filter((r) => r.state === 'TERMINATED')
    .sort((a, b) => time(a.updated_at) - time(b.updated_at) || a.id.localeCompare(b.id));
  const cut = Math.max(0, exited.length - keep);
  // Projection rows are keyed by actor id; the backend knows the replica id.
  const ids = exited.map((r) => replicaIdOf(r.id));
  return { kept: ids.slice(cut), dropped: ids.slice(0, cut) };
}

/** Forgets the output of all but the newest exited replicas of a deployment (bounded disk). */
export async function prunePreviousLogs(
  store: Pick<Store, 'listReplicas'>,
  backend: Pick<ReplicaBackend, 'forget'>,
  deploymentId: string,
): Promise<void> {
  if (!backend.forget) return;
  const { dropped } = await previousReplicaIds(store, deploymentId);
  for (const id of dropped) await backend.forget(id);
}

function time(v: unknown): number {
  return new Date(v as string).getTime() || 0;
}
