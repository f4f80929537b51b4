/**
 * Flag parsing for every command: Node's `parseArgs` with its errors turned into one short line
 * (`unknown option --nmae (did you mean --name?)`), and negative numbers refused as such
 * (`replicas: must be ≥ 0, got -1`) instead of being read as unknown short options.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';

export type FlagOptions = NonNullable<ParseArgsConfig['options']>;

/** Damerau–Levenshtein distance (optimal string alignment): a swap of two letters costs 1. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) d.push([i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      }
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest candidate when it is close enough to be a typo, else undefined. */
export function didYouMean(input: string, candidates: readonly string[]): string | undefined {
  const bare = input.replace(/^-+/, '').split('=')[0]!;
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const dist = editDistance(bare, c.replace(/^-+/, ''));
    if (dist < bestDistance) {
      best = c;
      bestDistance = dist;
    }
  }
  const limit = bare.length <= 3 ? 1 : bare.length <= 6 ? 2 : 3;
  if (best !== undefined && bestDistance <= limit) return best;
  // A prefix is a likely meaning too: `--rep` for `--replicas`.
  const prefixed = candidates.filter((c) => c.replace(/^-+/, '').startsWith(bare));
  return bare.length >= 2 && prefixed.length === 1 ? prefixed[0] : undefined;
}

function optionNames(options: FlagOptions): string[] {
  const names: string[] = [];
  for (const [name, o] of Object.entries(options)) {
    names.push(`--${name}`);
    if (o.short) names.push(`-${o.short}`);
  }
  return names;
}

const NEGATIVE_NUMBER = /^-(\d|\.\d)/;

/**
 * A negative number given as a positional or as a flag's value, named by `positionalNames` or
 * by its flag; undefined when there is none.
 */
function negativeNumber(
  argv: readonly string[],
  options: FlagOptions,
  positionalNames: readonly string[],
): string | undefined {
  let position = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return undefined;
    if (NEGATIVE_NUMBER.test(a)) {
      const name = positionalNames[position] ?? 'argument';
      return `${name}: must be ≥ 0, got ${a}`;
    }
    if (a.startsWith('--') && !a.includes('=')) {
      const o = options[a.slice(2)];
      if (o?.type === 'string') {
        const value = argv[i + 1];
        if (value !== undefined && NEGATIVE_NUMBER.test(value)) {
          return `${a}: must be ≥ 0, got ${value}`;
        }
        i++;
      }
      continue;
    }
    if (a.startsWith('-') && a.length > 1) continue;
    position++;
  }
  return undefined;
}

/** Turns a `parseArgs` error into one line; unknown options get the nearest known one. */
export function explainParseError(err: unknown, options: FlagOptions): string {
  const e = err as NodeJS.ErrnoException;
  const quoted = /'([^']*)'/.exec(e.message ?? '')?.[1] ?? '';
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const hint = didYouMean(quoted, optionNames(options));
      return `unknown option ${quoted}${hint ? ` (did you mean ${hint}?)` : ''}`;
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${JSON.stringify(quoted)}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const flag = quoted.split(' ')[0] ?? quoted;
      if (/argument missing/.test(e.message)) return `${flag} needs a value`;
      if (/does not take an argument/.test(e.message)) return `${flag} takes no value`;
      if (/ambiguous/.test(e.message)) {
        return `${flag}: a value starting with "-" must be written ${flag}=VALUE`;
      }
      return `${flag}: ${e.message}`;
    }
    default:
      return e.message ?? String(err);
  }
}

/** What `parseFlags` parses for options `O` (named, so declarations can be emitted). */
export type ParsedFlags<O extends FlagOptions> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; allowPositionals: boolean; strict: true }>
>;

/**
 * `parseArgs` (strict) returning the parse or the one-line problem. `positionalNames` names
 * the positionals in messages about them (`scale x -1` -> `replicas: must be ≥ 0, got -1`).
 */
export function parseFlags<O extends FlagOptions>(
  argv: string[],
  options: O,
  opts: { allowPositionals?: boolean; positionalNames?: readonly string[] } = {},
): { problem: string; parsed?: undefined } | { problem?: undefined; parsed: ParsedFlags<O> } {
  const negative = negativeNumber(argv, options, opts.positionalNames ?? []);
  if (negative) return { problem: negative };
  try {
    return {
      parsed: parseArgs({
        args: argv,
        options,
        allowPositionals: opts.allowPositionals ?? true,
        strict: true,
      }),
    };
  } catch (err) {
    return { problem: explainParseError(err, options) };
  }
}

/**
 * `parseFlags` for a command's `run`, ending the command where the parse says so: a usage
 * mistake goes to `usage` (default: one line on stderr naming the mistake and the help) and its
 * exit code is returned; `--help` prints `help` and returns 0. Otherwise the parse.
 */
export function parseOrExit<O extends FlagOptions>(
  cmd: string,
  help: string,
  argv: string[],
  options: O,
  opts: {
    allowPositionals?: boolean;
    positionalNames?: readonly string[];
    usage?: (problem: string) => number;
  } = {},
): ParsedFlags<O> | number {
  const r = parseFlags(argv, options, opts);
  if (r.problem !== undefined) {
    if (opts.usage) return opts.usage(r.problem);
    console.error(`flotilla ${cmd}: ${r.problem} (see \`flotilla ${cmd} --help\`)`);
    return 2;
  }
  if ((r.parsed.values as { help?: unknown }).help) {
    console.log(help);
    return 0;
  }
  return r.parsed;
}
