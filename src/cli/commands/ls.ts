/** `flotilla ls [--all] [--json]`: the deployments as a table (NAME STATE READY VARIANT AGE). */
import type { DeploymentView } from '../../index.ts';
import { COMMON_HELP, parseCommand, usageError, withClient } from '../args.ts';
import { age, table } from '../format.ts';

const HELP = `usage: flotilla ls [options]

Lists deployments: NAME STATE READY (HEALTHY/target) VARIANT AGE.

options:
  --all            include TERMINATED deployments

${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommand('ls', HELP, argv, { all: { type: 'boolean' } });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length > 0) return usageError('ls', `unexpected argument "${positionals[0]}"`);
  return withClient('ls', values, async (client) => {
    const { items } = await client.get<{ items: DeploymentView[] }>(
      `/v1/deployments${values.all ? '?include_deleted=true' : ''}`,
    );
    if (values.json) {
      console.log(JSON.stringify(items, null, 2));
      return 0;
    }
    if (items.length === 0) {
      console.log('no deployments');
      return 0;
    }
    console.log(
      table(
        ['NAME', 'STATE', 'READY', 'VARIANT', 'AGE'],
        items.map((d) => [
          d.name,
          d.state,
          `${d.healthy_replicas}/${d.target_replicas}`,
          d.runtime_variant,
          age(d.created_at),
        ]),
      ),
    );
    return 0;
  });
}
