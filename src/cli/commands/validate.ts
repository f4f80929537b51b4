/**
 * `flotilla validate <model folder or toml> --variant <v> [--set key.path=value ...]
 * [--model-root DIR ...]`: merges and validates a service definition like a deployment would,
 * then prints `{ "revision": ..., "session": ... }` as JSON (exit 0), or every problem, one
 * `path: message` per line on stderr (exit 1). Usage mistakes exit 2.
 */
import path from 'node:path';
import { isFlotillaError } from '../../domain/errors.ts';
import { generateRevision } from '../../revision/index.ts';
import { generateSession, runtimeVariants } from '../../session-generators/index.ts';
import { usageError as commonUsageError } from '../args.ts';
import { parseOrExit } from '../flags.ts';
import { output, printError, wantsJson } from '../output.ts';

const HELP = `usage: flotilla validate <model folder or .toml file> --variant <variant> [options]

Merges service-definition.toml (root < [variant] section) with request fields given by --set,
validates the result, and prints the revision and the session spec a replica would run.

options:
  --variant <v>          runtime variant: ${'%VARIANTS%'}
  --set key.path=value   a request field, highest priority (repeatable). The value is read as
                         JSON when it parses (4, true, ["a","b"], "quoted"), else as a string:
                         --set resource_slots.gpu=4 --set 'command=python -m http.server {port}'
  --model-root <dir>     a folder the model path must stay inside (repeatable; default: .)
  --json                 the output is JSON already; with it, problems are JSON on stderr too:
                         {"error":{"code","message","details":[{"path","message"}]}}
  -h, --help             this help

exit status: 0 valid, 1 invalid (every problem printed as "path: message"), 2 usage error`;

function usageError(message: string): number {
  return commonUsageError('validate', message);
}

/** `resource_slots.gpu=4` -> sets request.resource_slots.gpu = 4. */
export function applySet(target: Record<string, unknown>, assignment: string): string | undefined {
  const eq = assignment.indexOf('=');
  if (eq <= 0) return `--set ${JSON.stringify(assignment)}: expected key.path=value`;
  const keys = assignment.slice(0, eq).split('.');
  if (keys.some((k) => k === '' || k === '__proto__' || k === 'constructor' || k === 'prototype')) {
    return `--set ${JSON.stringify(assignment)}: bad key path`;
  }
  const raw = assignment.slice(eq + 1);
  let value: unknown = raw;
  try {
    value = JSON.parse(raw);
  } catch {
    // Not JSON: the value is the string as written.
  }
  let node = target;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    if (next === undefined) node[key] = {};
    else if (typeof next !== 'object' || next === null || Array.isArray(next)) {
      return `--set ${JSON.stringify(assignment)}: "${key}" was already set to a value, not a table`;
    }
    node = node[key] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]!] = value;
  return undefined;
}

const OPTIONS = {
  variant: { type: 'string' },
  set: { type: 'string', multiple: true },
  'model-root': { type: 'string', multiple: true },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function run(argv: string[]): Promise<number> {
  if (wantsJson(argv)) output.json = true;
  const help = HELP.replace('%VARIANTS%', runtimeVariants.join(', '));
  const parsed = parseOrExit('validate', help, argv, OPTIONS, { usage: usageError });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) return usageError('give exactly one model folder or .toml file');
  if (!values.variant) return usageError(`--variant is required (${runtimeVariants.join(', ')})`);

  const request: Record<string, unknown> = {};
  for (const assignment of values.set ?? []) {
    const problem = applySet(request, assignment);
    if (problem) return usageError(problem);
  }
  const modelRoots = (values['model-root'] ?? []).map((r) => path.resolve(r));
  try {
    const { revision, warnings } = await generateRevision(
      { runtime_variant: values.variant, model_path: path.resolve(positionals[0]!), request },
      { modelRoots: modelRoots.length > 0 ? modelRoots : [process.cwd()] },
    );
    const session = generateSession(revision);
    if (output.json) {
      // Scripts read one document: the warnings go with it instead of as lines on stderr.
      console.log(JSON.stringify({ revision, session, warnings }, null, 2));
      return 0;
    }
    for (const w of warnings) console.error(`warning: ${w}`);
    console.log(JSON.stringify({ revision, session }, null, 2));
    return 0;
  } catch (err) {
    if (isFlotillaError(err)) {
      if (output.json) {
        printError('flotilla validate', err.code, err.message, err.details);
        return 1;
      }
      if (err.details.length === 0) console.error(err.message);
      for (const d of err.details) console.error(`${d.path}: ${d.message}`);
      return 1;
    }
    printError('flotilla validate', 'internal', err instanceof Error ? err.message : String(err));
    return 1;
  }
}
