/** `flotilla rm NAME [--wait] [--timeout S]`: deletes a deployment; --wait until TERMINATED. */
import type { DeploymentView } from '../../index.ts';
import { COMMON_HELP, enc, parseCommand, usageError, withClient } from '../args.ts';
import { showOrWait, WAIT_OPTIONS, waitFlags } from '../wait.ts';

const HELP = `usage: flotilla rm <name or id> [options]

Deletes a deployment: its routes drain, its replicas stop, it ends TERMINATED.

options:
  --wait           wait until TERMINATED
  --timeout <s>    how long --wait waits (default 300)

${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommand('rm', HELP, argv, WAIT_OPTIONS);
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) return usageError('rm', 'give exactly one deployment name or id');
  const flags = waitFlags('rm', values);
  if (typeof flags === 'number') return flags;
  return withClient('rm', values, async (client) => {
    const v = await client.delete<DeploymentView>(`/v1/deployments/${enc(positionals[0]!)}`);
    return showOrWait('rm', client, v, flags, {
      line: `${v.name}: ${v.state}`,
      verdict: (d) =>
        d.state === 'TERMINATED' ? { ok: true, message: `${d.name} is TERMINATED` } : null,
    });
  });
}
