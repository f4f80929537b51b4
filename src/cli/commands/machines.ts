/**
 * `flotilla machines [deployment|replica|route] --format mermaid|scxml|json`: the statecharts
 * read from the machine definitions (src/inspector/statechart.ts). No server needed.
 */
import { parseArgs } from 'node:util';
import {
  exportStatechart,
  FORMATS,
  MACHINE_NAMES,
  type MachineName,
  type StatechartFormat,
} from '../../inspector/statechart.ts';
import { usageError } from '../args.ts';

const HELP = `usage: flotilla machines [${MACHINE_NAMES.join('|')}] [options]

Prints the statechart of a machine (all three without a name), read from its definition.

options:
  --format <f>     ${FORMATS.join(', ')} (default mermaid)
  -h, --help       this help`;

export async function run(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: true }>>;
  const options = {
    format: { type: 'string', default: 'mermaid' },
    help: { type: 'boolean', short: 'h' },
  } as const;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    return usageError('machines', (err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const format = values.format as StatechartFormat;
  if (!FORMATS.includes(format)) {
    return usageError('machines', `--format: expected one of ${FORMATS.join(', ')}`);
  }
  if (positionals.length > 1) return usageError('machines', 'give at most one machine name');
  const name = positionals[0];
  if (name !== undefined && !MACHINE_NAMES.includes(name as MachineName)) {
    return usageError('machines', `unknown machine "${name}": one of ${MACHINE_NAMES.join(', ')}`);
  }
  const names = name ? [name as MachineName] : MACHINE_NAMES;
  if (format === 'json' && names.length > 1) {
    const all = Object.fromEntries(names.map((n) => [n, JSON.parse(exportStatechart(n, 'json'))]));
    process.stdout.write(`${JSON.stringify(all, null, 2)}\n`);
    return 0;
  }
  const parts = names.map((n) =>
    names.length > 1 && format === 'mermaid'
      ? `%% ${n}\n${exportStatechart(n, format)}`
      : exportStatechart(n, format),
  );
  process.stdout.write(parts.join('\n'));
  return 0;
}
