/**
 * Turns zod issues into ErrorDetails a person can act on: one detail per problem, the field
 * path dotted, unknown keys named one by one with a "did you mean" when one is close.
 */
import type { z } from 'zod';
import type { ErrorDetail } from '../domain/errors.ts';

export interface IssueContext {
  /** Path segments in front of every issue path (e.g. `['vllm']` for a variant section). */
  prefix: readonly string[];
  /** Where the layer came from, appended to messages (`service-definition.toml`). */
  source?: string | undefined;
  /** The keys allowed in the table at `path` (relative to the layer), for suggestions. */
  allowedKeys: (path: readonly PropertyKey[]) => readonly string[];
}

/** Never empty: an empty key is `""` and the layer itself `(root)`, so every detail names a place. */
export function joinPath(segments: readonly PropertyKey[]): string {
  const joined = segments
    .map((s) => (typeof s === 'number' ? `[${s}]` : s === '' ? '""' : String(s)))
    .join('.');
  return joined || '(root)';
}

export function withSource(message: string, source: string | undefined): string {
  return source ? `${message} (in ${source})` : message;
}

export function issuesToDetails(
  issues: readonly z.core.$ZodIssue[],
  ctx: IssueContext,
): ErrorDetail[] {
  const details: ErrorDetail[] = [];
  for (const issue of issues) {
    const path = [...ctx.prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      const allowed = ctx.allowedKeys(issue.path);
      for (const key of issue.keys) {
        details.push({
          path: joinPath([...path, key]),
          message: withSource(unknownKeyMessage(key, allowed), ctx.source),
        });
      }
    } else if (issue.code === 'invalid_key') {
      details.push({
        path: joinPath(path),
        message: withSource(
          'not a valid environment variable name (letters, digits and "_", not starting with a digit)',
          ctx.source,
        ),
      });
    } else {
      details.push({ path: joinPath(path), message: withSource(issue.message, ctx.source) });
    }
  }
  return details;
}

export function unknownKeyMessage(key: string, allowed: readonly string[]): string {
  const near = closest(key, allowed);
  if (near) return `unknown key (did you mean "${near}"?)`;
  return allowed.length ? `unknown key; allowed here: ${allowed.join(', ')}` : 'unknown key';
}

function closest(key: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  const k = key.toLowerCase();
  for (const c of candidates) {
    const d = editDistance(k, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  const limit = Math.max(1, Math.min(3, Math.floor(key.length / 3)));
  return bestDistance <= limit ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
