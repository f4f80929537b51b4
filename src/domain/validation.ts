import type { z } from 'zod';
import { type ErrorDetail, FlotillaError } from './errors.ts';

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

/** zod issues as one detail per problem, with the dotted field path. */
export function zodDetails(error: z.ZodError): ErrorDetail[] {
  return error.issues.map((i) => {
    const path = i.path
      .map((p) => (typeof p === 'number' ? `[${p}]` : String(p)))
      .join('.')
      .replace(/\.\[/g, '[');
    if (i.code === 'unrecognized_keys') {
      return { path: path || '(root)', message: `unknown field(s): ${i.keys.join(', ')}` };
    }
    const got = 'input' in i ? `, got ${describe(i.input)}` : '';
    return {
      path: path || '(root)',
      message: `${i.message}${i.message.includes(', got') ? '' : got}`,
    };
  });
}

/** Parses with `schema` or throws FlotillaError('validation') naming every bad field. */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value, { reportInput: true });
  if (r.success) return r.data;
  const details = zodDetails(r.error);
  throw new FlotillaError('validation', details.map((d) => `${d.path}: ${d.message}`).join('; '), {
    details,
  });
}
