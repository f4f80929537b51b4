/** `flotilla rm NAME [--wait] [--timeout S]`: deletes a deployment; --wait until TERMINATED. */
import type { DeploymentView } from '../../index.ts';
import { COMMON_HELP, enc, intFlag, parseCommand, usageError, withClient } from '../args.ts';
import { reportOutcome, waitForDeployment } from '../wait.ts';

const HELP = `usage: flotilla rm <name or id> [options]

Deletes a deployment: its routes drain, its replicas stop, it ends TERMINATED.

options:
  --wait           wait until TERMINATED
  --timeout <s>    how long --wait waits (default 300)

${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommand('rm', argv, {
    wait: { type: 'boolean' },
    timeout: { type: 'string' },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length !== 1) return usageError('rm', 'give exactly one deployment name or id');
  const timeout = intFlag('--timeout', values.timeout, { min: 1 }) ?? 300;
  if (typeof timeout === 'string') return usageError('rm', timeout);
  const json = values.json === true;
  return withClient('rm', values, async (client) => {
    const v = await client.delete<DeploymentView>(`/v1/deployments/${enc(positionals[0]!)}`);
    if (!values.wait) {
      if (json) console.log(JSON.stringify(v, null, 2));
      else console.log(`${v.name}: ${v.state}`);
      return 0;
    }
    const print = json ? (l: string) => console.error(l) : (l: string) => console.log(l);
    const outcome = await waitForDeployment(client, v.id, {
      timeoutS: timeout,
      verdict: (d) =>
        d.state === 'TERMINATED' ? { ok: true, message: `${d.name} is TERMINATED` } : null,
      print,
    });
    return reportOutcome('rm', outcome, json);
  });
}
