/**
 * `flotilla deploy <model folder or .toml> --name N [--variant V] [--replicas N]
 * [--set key.path=value ...] [--wait] [--timeout S]`: POST /v1/deployments with the folder as
 * an absolute model_path. With --wait, prints progress until RUNNING with every replica
 * HEALTHY (exit 0) or until ERROR / the timeout (the reason, exit 1).
 */
import path from 'node:path';
import type { DeploymentView } from '../../index.ts';
import { COMMON_HELP, intFlag, parseCommand, usageError, withClient } from '../args.ts';
import { runningVerdict, showOrWait, WAIT_OPTIONS, waitFlags } from '../wait.ts';
import { applySet } from './validate.ts';

const HELP = `usage: flotilla deploy <model folder or .toml file> --name <name> [options]

Creates a deployment through the API. The folder (or .toml file) must lie inside one of the
server's --model-root folders; it is sent as an absolute path.

options:
  --name <name>          deployment name: lower-case letters, digits and "-" (required)
  --variant <v>          runtime variant (default: cmd)
  --replicas <n>         initial replica count (default 1)
  --set key.path=value   any other request field, JSON when it parses (repeatable):
                         --set routing.strategy=least_connections --set environ.LOG_LEVEL=debug
  --wait                 wait until RUNNING with every replica HEALTHY; exit 1 on ERROR/timeout
  --timeout <s>          how long --wait waits (default 300)

${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommand('deploy', HELP, argv, {
    name: { type: 'string' },
    variant: { type: 'string' },
    replicas: { type: 'string' },
    set: { type: 'string', multiple: true },
    ...WAIT_OPTIONS,
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 1)
    return usageError('deploy', 'give exactly one model folder or .toml file');
  if (!values.name) return usageError('deploy', '--name is required');
  const replicas = intFlag('--replicas', values.replicas, { max: 1000 });
  if (typeof replicas === 'string') return usageError('deploy', replicas);
  const flags = waitFlags('deploy', values);
  if (typeof flags === 'number') return flags;

  const request: Record<string, unknown> = {};
  for (const assignment of values.set ?? []) {
    const problem = applySet(request, assignment);
    if (problem) return usageError('deploy', problem);
  }
  request.name = values.name;
  request.model_path = path.resolve(positionals[0]!);
  if (values.variant) request.runtime_variant = values.variant;
  if (replicas !== undefined) request.replicas = replicas;

  return withClient('deploy', values, async (client) => {
    const created = await client.post<DeploymentView>('/v1/deployments', request);
    return showOrWait('deploy', client, created, flags, {
      line: `deployment ${created.name} created (id ${created.id}, ${created.state})`,
      announce: `deployment ${created.name} created (id ${created.id})`,
      verdict: runningVerdict,
    });
  });
}
