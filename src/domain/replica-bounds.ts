/**
 * The replica-count rule of a deployment, in one place: the count stays within
 * [min_replicas, max_replicas], and max_replicas defaults to at least 10.
 * Used by every way in (the embedded API's deploy, the runtime's scale, the autoscaler);
 * `machines/deployment.ts` keeps its own guard because machines import nothing from src/.
 */
import { FlotillaError } from './errors.ts';

/** The least default of max_replicas when the request gives none. */
export const DEFAULT_MAX_REPLICAS = 10;

/** max_replicas when the request gives none: the requested count, at least 10. */
export function defaultMaxReplicas(replicas: number): number {
  return Math.max(replicas, DEFAULT_MAX_REPLICAS);
}

/** Throws FlotillaError('validation') at `replicas` unless it is an integer within the bounds. */
export function assertReplicaBounds(b: {
  replicas: number;
  min_replicas: number;
  max_replicas: number;
}): void {
  const { replicas, min_replicas: min, max_replicas: max } = b;
  if (Number.isInteger(replicas) && replicas >= min && replicas <= max) return;
  throw new FlotillaError('validation', `replicas must be an integer from ${min} to ${max}`, {
    details: [
      {
        path: 'replicas',
        message: `expected an integer from ${min} to ${max}, got ${JSON.stringify(replicas)}`,
      },
    ],
  });
}

/**
 * The bounds of a new deployment: top-level fields first, then the scaling policy's, then
 * the defaults (min 0, max {@link defaultMaxReplicas}).
 */
export function requestedReplicaBounds(req: {
  replicas: number;
  min_replicas?: number | undefined;
  max_replicas?: number | undefined;
  scaling_policy?: { min_replicas?: number | undefined; max_replicas?: number | undefined };
}): { replicas: number; min_replicas: number; max_replicas: number } {
  return {
    replicas: req.replicas,
    min_replicas: req.min_replicas ?? req.scaling_policy?.min_replicas ?? 0,
    max_replicas:
      req.max_replicas ?? req.scaling_policy?.max_replicas ?? defaultMaxReplicas(req.replicas),
  };
}

/**
 * A new deployment's bounds, with every inconsistency named at its own field (min above max
 * at `min_replicas`, the count outside them at `replicas`), as `deploy` has always answered.
 */
export function assertDeploymentReplicaBounds(b: {
  replicas: number;
  min_replicas: number;
  max_replicas: number;
}): void {
  const { replicas, min_replicas: min, max_replicas: max } = b;
  const details: Array<{ path: string; message: string }> = [];
  if (min > max)
    details.push({ path: 'min_replicas', message: `must not exceed max_replicas (${max})` });
  if (replicas > max)
    details.push({ path: 'replicas', message: `must not exceed max_replicas (${max})` });
  if (replicas < min)
    details.push({ path: 'replicas', message: `must be at least min_replicas (${min})` });
  if (details.length === 0) return;
  throw new FlotillaError('validation', details.map((d) => `${d.path}: ${d.message}`).join('; '), {
    details,
  });
}
