/**
 * Crash loops end (issue 12): the exit of a replica's session is reported with its last lines
 * of output, so the replica's reason, and the deployment's ERROR reason once the crash loop
 * ends (machines/deployment.ts, max_failed_starts), say why it died.
 */
import type { ReplicaBackend, ReplicaExit } from '../backends/backend.ts';

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
