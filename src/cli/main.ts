/**
 * The `flotilla` command. Each subcommand lives in src/cli/commands/<name>.ts and exports
 * `run(argv: string[]): Promise<number>` (the exit code). Loaded lazily so `--help` is instant.
 */
import { existsSync, readFileSync } from 'node:fs';
import { didYouMean } from './flags.ts';
import { exitQuietlyOnClosedPipe, output, printError, wantsJson } from './output.ts';

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
  // The package root is two folders up from src/cli/, three from the compiled dist/src/cli/.
  for (const rel of ['../../package.json', '../../../package.json']) {
    const url = new URL(rel, import.meta.url);
    if (!existsSync(url)) continue;
    const pkg = JSON.parse(readFileSync(url, 'utf8'));
    if (pkg.name === 'flotilla') return String(pkg.version);
  }
  throw new Error('flotilla: package.json not found above src/cli/');
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

const TOP_LEVEL = ['help', '--help', '-h', 'version', '--version', '-v'];

export async function main(argv: string[]): Promise<number> {
  exitQuietlyOnClosedPipe();
  output.json = wantsJson(argv);
  // `--json` is global: `flotilla --json ls` is `flotilla ls --json`.
  const args = argv[0] === '--json' ? [...argv.slice(1), '--json'] : argv;
  const [cmd, ...rest] = args;
  if (!cmd) {
    // No command is a usage mistake (exit 2), as for every other one; the usage says what to type.
    console.error(usage());
    return 2;
  }
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(usage());
    return 0;
  }
  if (cmd === '--version' || cmd === '-v' || cmd === 'version') {
    console.log(version());
    return 0;
  }
  if (!Object.hasOwn(COMMANDS, cmd)) {
    const hint = didYouMean(cmd, [...Object.keys(COMMANDS), ...TOP_LEVEL]);
    const what = cmd.startsWith('-') ? 'option' : 'command';
    const message = `unknown ${what} ${JSON.stringify(cmd)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}`;
    if (output.json) printError('flotilla', 'usage', message);
    else console.error(`flotilla: ${message}; run \`flotilla --help\` for the commands`);
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
