/**
 * `flotilla scale NAME N [--wait] [--timeout S]`: sets the replica count; with --wait, until
 * exactly N replicas run, all HEALTHY, and none is still terminating.
 */
import type { DeploymentView } from '../../index.ts';
import { COMMON_HELP, enc, intFlag, parseCommand, usageError, withClient } from '../args.ts';
import { showOrWait, type Verdict, WAIT_OPTIONS, waitFlags } from '../wait.ts';

const HELP = `usage: flotilla scale <name or id> <replicas> [options]

options:
  --wait           wait until exactly <replicas> replicas run, all HEALTHY
  --timeout <s>    how long --wait waits (default 300)

${COMMON_HELP}`;

export function scaledVerdict(n: number) {
  return (v: DeploymentView): Verdict => {
    const leaving = v.replicas.filter((r) => r.state === 'TERMINATING').length;
    if (v.current_replicas === n && v.healthy_replicas === n && leaving === 0) {
      return { ok: true, message: `${v.name} runs ${n} HEALTHY replica${n === 1 ? '' : 's'}` };
    }
    if (v.state === 'ERROR' || v.state === 'DESTROYING' || v.state === 'TERMINATED') {
      return { ok: false, message: `${v.name} is ${v.state}${v.reason ? `: ${v.reason}` : ''}` };
    }
    return null;
  };
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommand('scale', HELP, argv, WAIT_OPTIONS, ['deployment', 'replicas']);
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 2) return usageError('scale', 'give a deployment and a replica count');
  const n = intFlag('replicas', positionals[1], { max: 1000 });
  if (typeof n !== 'number') return usageError('scale', n ?? 'replicas: missing');
  const flags = waitFlags('scale', values);
  if (typeof flags === 'number') return flags;
  return withClient('scale', values, async (client) => {
    const v = await client.post<DeploymentView>(`/v1/deployments/${enc(positionals[0]!)}/scale`, {
      replicas: n,
    });
    return showOrWait('scale', client, v, flags, {
      line: `${v.name}: target ${v.target_replicas} replicas`,
      verdict: scaledVerdict(n),
    });
  });
}
