/**
 * How the CLI reports: errors as one line on stderr, or with `--json` as
 * `{"error":{"code","message","details"}}` on stderr (the API's error shape); and a write to a
 * closed pipe (`flotilla status x | head -1`) ends the process quietly instead of with a stack.
 */
import type { ErrorCode, ErrorDetail } from '../domain/errors.ts';

/** Set once per run from argv (`--json` anywhere before `--`). */
export const output = { json: false };

/** Whether `--json` is among the options of argv (not after `--`). */
export function wantsJson(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false;
    if (a === '--json' || a === '--json=true') return true;
  }
  return false;
}

/**
 * Prints one error: `prefix: message` (and one `  path: message` line per detail when there
 * are several), or the JSON error body on one line when `--json` is on.
 */
export function printError(
  prefix: string,
  code: ErrorCode | 'usage',
  message: string,
  details: readonly ErrorDetail[] = [],
): void {
  if (output.json) {
    const d = details.length > 0 ? details : [{ path: prefix.replace(/^flotilla ?/, ''), message }];
    console.error(JSON.stringify({ error: { code, message, details: d } }));
    return;
  }
  console.error(`${prefix}: ${message}`);
}

let guarded = false;

/**
 * A reader that went away (EPIPE) is the end of the run, not an error: exit 0 without a trace,
 * as `git log | head -1` does. Errors other than EPIPE are rethrown as before.
 */
export function exitQuietlyOnClosedPipe(): void {
  if (guarded) return;
  guarded = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') process.exit(0);
      throw err;
    });
  }
}
