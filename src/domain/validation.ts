import type { z } from 'zod';
import { type ErrorDetail, validationErrors } from './errors.ts';

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

const joinPath = (parts: readonly PropertyKey[]) =>
  parts
    .map((p) => (typeof p === 'number' ? `[${p}]` : String(p)))
    .join('.')
    .replace(/\.\[/g, '[');

/**
 * zod issues as details with the dotted field path, one per problem and one per unknown
 * field (so each names its own path). `prefix` is put before every path (`headers.`); the
 * root is `(root)`, or the prefix itself without its dot. The embedded API and the HTTP API
 * both report through this function, so they name the same fields the same way.
 */
export function zodDetails(error: z.ZodError, prefix = ''): ErrorDetail[] {
  const out: ErrorDetail[] = [];
  const at = (path: string) => {
    if (path) return prefix + path;
    return prefix ? prefix.slice(0, -1) : '(root)';
  };
  for (const i of error.issues) {
    if (i.code === 'unrecognized_keys') {
      for (const key of i.keys)
        out.push({ path: at(joinPath([...i.path, key])), message: 'unknown field' });
      continue;
    }
    const got = 'input' in i ? `, got ${describe(i.input)}` : '';
    out.push({
      path: at(joinPath(i.path)),
      message: `${i.message}${i.message.includes(', got') ? '' : got}`,
    });
  }
  return out;
}

/** The FlotillaError('validation') for a failed parse, naming every bad field. */
export function zodValidationError(error: z.ZodError, prefix = '') {
  return validationErrors(zodDetails(error, prefix));
}

/** Parses with `schema` or throws FlotillaError('validation') naming every bad field. */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value, { reportInput: true });
  if (r.success) return r.data;
  throw zodValidationError(r.error);
}
