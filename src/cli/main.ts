/**
 * The `flotilla` command. Each subcommand lives in src/cli/commands/<name>.ts and exports
 * `run(argv: string[]): Promise<number>` (the exit code). Loaded lazily so `--help` is instant.
 */
import { readFileSync } from 'node:fs';

export const COMMANDS: Record<string, string> = {
  serve: 'run every Flotilla role (API, coordinator, prober, proxy) in this process',
  deploy: 'deploy a model folder or service-definition.toml',
  ls: 'list deployments',
  status: 'show one deployment: replicas, routes, recent events, why it is not RUNNING',
  scale: 'set the replica count of a deployment',
  rm: 'delete a deployment',
  validate: 'merge and validate a service definition; print the revision and session spec',
  logs: 'show a replica\u2019s logs',
  machines: 'export the deployment/replica/route statecharts (mermaid, scxml, json)',
  inspect: 'print the URL of the inspector (the live statechart view) for a deployment',
  'echo-server': 'run the OpenAI-compatible echo model server (demos and tests)',
};

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  return String(pkg.version);
}

export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([c, d]) => `  ${c.padEnd(width)}  ${d}`);
  return [
    `flotilla ${version()}: control plane and traffic router for model-serving deployments`,
    '',
    'usage: flotilla <command> [options]',
    '',
    'commands:',
    ...lines,
    '',
    'Run `flotilla <command> --help` for the options of one command.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(usage());
    return cmd ? 0 : 1;
  }
  if (cmd === '--version' || cmd === '-v' || cmd === 'version') {
    console.log(version());
    return 0;
  }
  if (!(cmd in COMMANDS)) {
    console.error(`flotilla: unknown command "${cmd}"\n\n${usage()}`);
    return 2;
  }
  let mod: { run: (argv: string[]) => Promise<number> };
  try {
    mod = await import(`./commands/${cmd}.ts`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') {
      console.error(`flotilla: "${cmd}" is not available in this build yet`);
      return 2;
    }
    throw err;
  }
  return mod.run(rest);
}
