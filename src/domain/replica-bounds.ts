/**
 * The replica-count rule, in one place: a deployment's replicas are an integer within
 * [min_replicas, max_replicas], and max_replicas defaults to the larger of the replica count
 * and DEFAULT_MAX_REPLICAS.
 */
import { FlotillaError } from './errors.ts';

/** max_replicas when a request gives none (and the replica count is not larger). */
export const DEFAULT_MAX_REPLICAS = 10;

/** The max_replicas a deployment of `replicas` gets when none is given. */
export function defaultMaxReplicas(replicas: number): number {
  return Math.max(replicas, DEFAULT_MAX_REPLICAS);
}

/** Throws a `validation` FlotillaError (detail path `replicas`) unless min <= replicas <= max. */
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
