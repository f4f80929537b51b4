/**
 * What the HTTP commands (deploy, ls, status, scale, rm, logs) share: the common flags, usage
 * errors (exit 2), and turning API errors into short lines on stderr (exit 1).
 */
import type { ParseArgsConfig, parseArgs } from 'node:util';
import { ConfigError, parseClientConfig } from './client-config.ts';
import { parseOrExit } from './flags.ts';
import { type ApiClient, ApiError, createClient, NoServerError } from './http-client.ts';
import { output, printError, wantsJson } from './output.ts';

export const COMMON_HELP = `common options:
  --api <url>      the Flotilla API (env FLOTILLA_API_URL, default http://127.0.0.1:8080)
  --token <t>      bearer token (env FLOTILLA_API_TOKEN)
  --json           print JSON for scripts (errors too: {"error":{...}} on stderr)
  -h, --help       this help`;

export const COMMON_OPTIONS = {
  api: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

/** One line on stderr (JSON with --json) naming the mistake and where the usage is; exit 2. */
export function usageError(cmd: string, message: string): number {
  if (output.json) printError(`flotilla ${cmd}`, 'usage', message);
  else console.error(`flotilla ${cmd}: ${message} (see \`flotilla ${cmd} --help\`)`);
  return 2;
}

/** What `parseCommand` returns for options `O` (named, so declarations can be emitted). */
export type ParsedCommand<O extends NonNullable<ParseArgsConfig['options']>> = ReturnType<
  typeof parseArgs<{
    args: string[];
    options: typeof COMMON_OPTIONS & O;
    allowPositionals: true;
    strict: true;
  }>
>;

/**
 * Parses argv with the common options added; a usage mistake prints one line and returns
 * exit 2, `--help` prints `help` and returns 0. `positionalNames` name the positionals in
 * messages (`replicas: must be ≥ 0`).
 */
export function parseCommand<O extends NonNullable<ParseArgsConfig['options']>>(
  cmd: string,
  help: string,
  argv: string[],
  options: O,
  positionalNames: readonly string[] = [],
): ParsedCommand<O> | number {
  if (wantsJson(argv)) output.json = true;
  return parseOrExit(
    cmd,
    help,
    argv,
    { ...COMMON_OPTIONS, ...options },
    {
      positionalNames,
      usage: (problem) => usageError(cmd, problem),
    },
  ) as ParsedCommand<O> | number;
}

/** Prints an error the way every command does; returns the exit code (1). */
export function reportError(cmd: string, err: unknown): number {
  if (err instanceof NoServerError) {
    if (output.json) {
      printError('flotilla', 'dependency_unavailable', err.message, [
        { path: 'api', message: err.api },
      ]);
    } else console.error(`flotilla: ${err.message}`);
    return 1;
  }
  if (err instanceof ApiError) {
    if (output.json) {
      printError(`flotilla ${cmd}`, err.code as 'internal', err.message, err.details);
    } else if (err.details.length <= 1) console.error(`flotilla ${cmd}: ${err.message}`);
    else {
      console.error(`flotilla ${cmd}: refused (${err.code}):`);
      for (const d of err.details) console.error(`  ${d.path}: ${d.message}`);
    }
    return 1;
  }
  if (err instanceof ConfigError) {
    if (output.json) {
      printError(
        `flotilla ${cmd}`,
        'usage',
        err.lines.join('; '),
        err.lines.map((line) => ({ path: cmd, message: line })),
      );
    } else for (const line of err.lines) console.error(`flotilla ${cmd}: ${line}`);
    return 2;
  }
  printError(`flotilla ${cmd}`, 'internal', err instanceof Error ? err.message : String(err));
  return 1;
}

/** Builds the client from the common flags and runs `fn`, reporting any error. */
export async function withClient(
  cmd: string,
  values: { api?: string | undefined; token?: string | undefined },
  fn: (client: ApiClient) => Promise<number>,
): Promise<number> {
  try {
    const client = createClient(parseClientConfig({ api: values.api, token: values.token }));
    return await fn(client);
  } catch (err) {
    return reportError(cmd, err);
  }
}

/** Parses a non-negative integer flag; returns an error message instead of throwing. */
export function intFlag(
  name: string,
  value: string | undefined,
  opts: { min?: number; max?: number } = {},
): number | string | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  const min = opts.min ?? 0;
  if (Number.isInteger(n) && n < min) {
    return `${name}: must be ≥ ${min}, got ${JSON.stringify(value)}`;
  }
  if (!Number.isInteger(n) || n < min || (opts.max !== undefined && n > opts.max)) {
    return `${name}: expected an integer${opts.max !== undefined ? ` from ${min} to ${opts.max}` : ` ≥ ${min}`}, got ${JSON.stringify(value)}`;
  }
  return n;
}

export const enc = encodeURIComponent;
