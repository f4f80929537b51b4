/**
 * What a PATCH changes (issue 12, "no stuck deployments"): a new revision only when what the
 * replicas run changes (an empty or no-op PATCH creates none and restarts nothing), and the
 * replica bounds (`min_replicas`, `max_replicas`, `scaling_policy`) applied after validation,
 * never silently dropped. Pure, so it is tested alone.
 */
import type { ErrorDetail } from '../domain/errors.ts';
import { FlotillaError } from '../domain/errors.ts';

/** JSON with object keys sorted: PostgreSQL's jsonb does not keep key order. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(sortKeys(v));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.entries(v as Record<string, unknown>)
        .filter(([, x]) => x !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, x]) => [k, sortKeys(x)]),
    );
  }
  return v;
}

/** Whether two revision specs (with the declared slots) run the same thing. */
export function sameRevision(
  a: { spec: unknown; declared?: unknown },
  b: { spec: unknown; declared?: unknown },
): boolean {
  return (
    canonicalJson(a.spec) === canonicalJson(b.spec) &&
    canonicalJson(a.declared ?? null) === canonicalJson(b.declared ?? null)
  );
}

export interface Bounds {
  min_replicas: number;
  max_replicas: number;
}

/**
 * The bounds after a PATCH; throws FlotillaError('validation') naming the field when they do
 * not hold (min <= max, the current target inside them, a scaling policy's own min <= max).
 */
export function nextBounds(
  current: Bounds & { replicas: number },
  patch: { min_replicas?: number | undefined; max_replicas?: number | undefined },
  policy?: { min_replicas?: number | undefined; max_replicas?: number | undefined } | null,
): Bounds {
  const next = {
    min_replicas: patch.min_replicas ?? current.min_replicas,
    max_replicas: patch.max_replicas ?? current.max_replicas,
  };
  const details: ErrorDetail[] = [];
  const field = patch.min_replicas !== undefined ? 'min_replicas' : 'max_replicas';
  if (next.min_replicas > next.max_replicas) {
    details.push({
      path: field,
      message: `min_replicas (${next.min_replicas}) must not exceed max_replicas (${next.max_replicas})`,
    });
  } else if (current.replicas < next.min_replicas) {
    details.push({
      path: 'min_replicas',
      message: `must not exceed the current replica count (${current.replicas}); scale first`,
    });
  } else if (current.replicas > next.max_replicas) {
    details.push({
      path: 'max_replicas',
      message: `must not be below the current replica count (${current.replicas}); scale first`,
    });
  }
  if (
    policy?.min_replicas !== undefined &&
    policy.max_replicas !== undefined &&
    policy.min_replicas > policy.max_replicas
  ) {
    details.push({
      path: 'scaling_policy.min_replicas',
      message: `must not exceed scaling_policy.max_replicas (${policy.max_replicas})`,
    });
  }
  if (details.length > 0) {
    throw new FlotillaError(
      'validation',
      details.map((d) => `${d.path}: ${d.message}`).join('; '),
      { details },
    );
  }
  return next;
}
