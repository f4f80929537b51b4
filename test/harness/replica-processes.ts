import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * Live processes of the given replicas, found by their FLOTILLA_REPLICA_ID environment
 * variable in /proc, so tests running side by side never count each other's replicas.
 */
export function replicaPids(ids: readonly string[]): Map<string, number[]> {
  const out = new Map<string, number[]>(ids.map((i) => [i, []]));
  const ps = execFileSync('ps', ['-eo', 'pid=,stat='], { encoding: 'utf8' });
  for (const line of ps.split('\n')) {
    const m = line.trim().match(/^(\d+)\s+(\S+)/);
    if (!m || m[2]!.startsWith('Z')) continue;
    let env: string;
    try {
      env = readFileSync(`/proc/${m[1]}/environ`, 'utf8');
    } catch {
      continue;
    }
    const id = env
      .split('\0')
      .find((e) => e.startsWith('FLOTILLA_REPLICA_ID='))
      ?.slice('FLOTILLA_REPLICA_ID='.length);
    if (id && out.has(id)) out.get(id)!.push(Number(m[1]));
  }
  return out;
}
