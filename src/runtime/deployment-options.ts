/**
 * What a stored deployment row carries besides its revision request (replica bounds, routing,
 * admission, scaling group and policy), read back with one schema instead of casts.
 */
import { z } from 'zod';
import { defaultMaxReplicas } from '../domain/replica-bounds.ts';
import {
  AdmissionModes,
  AdmissionProfiles,
  type AdmissionSettings,
  BalancingStrategies,
  DEFAULT_ROUTING,
  type RoutingConfig,
} from '../domain/routing.ts';
import type { ScalingPolicy } from '../scaling/policy.ts';
import type { DeploymentRecord } from '../store/store.ts';

/** What the stored deployment spec carries besides the revision request. */
export interface DeploymentOptions {
  replicas: number;
  min_replicas: number;
  max_replicas: number;
  routing: RoutingConfig;
  admission?: AdmissionSettings | undefined;
  scaling_group: string;
  scaling_policy?: ScalingPolicy | undefined;
}

// The spec was validated when it was written (deployment-request.ts); a field of the wrong
// type here comes from an older build and falls back to its default, as before, rather than
// making the deployment unreadable.
const lenient = <T extends z.ZodType>(t: T) => t.optional().catch(undefined);
const num = lenient(z.number());

const storedSpecSchema = z.looseObject({
  min_replicas: num,
  max_replicas: num,
  routing: lenient(
    z.object({
      strategy: lenient(z.enum(BalancingStrategies)),
      request_timeout_s: num,
      retries: num,
      allowed_path_prefixes: lenient(z.array(z.string())),
    }),
  ),
  admission: lenient(
    z.object({
      profile: lenient(z.enum(AdmissionProfiles)),
      mode: lenient(z.enum(AdmissionModes)),
      request_timeout_s: num,
      max_queue_size: num,
      max_concurrent_requests: num,
      queue_rejection_threshold: num,
      rejection_threshold: num,
      queue_timeout_s: num,
    }),
  ),
  scaling_group: lenient(z.string()),
  // Loose: fields this build does not read (added by later ones) are kept, not dropped.
  scaling_policy: lenient(
    z.looseObject({
      min_replicas: num,
      max_replicas: num,
      target_metric: lenient(z.string()),
      target_value: num,
      scale_up_threshold: num,
      scale_down_threshold: num,
      cooldown_period: num,
      scale_to_zero_after_s: num,

      max_step: num,
      stable_window_s: num,
      panic_window_s: num,
    }),
  ),
});

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The options of a stored deployment, with the defaults of anything it does not say. */
export function optionsOf(record: DeploymentRecord): DeploymentOptions {
  const parsed = storedSpecSchema.safeParse(record.spec ?? {});
  const spec = parsed.success ? parsed.data : {};
  return {
    replicas: record.target_replicas,
    min_replicas: spec.min_replicas ?? 0,
    max_replicas: spec.max_replicas ?? defaultMaxReplicas(record.target_replicas),
    routing: { ...DEFAULT_ROUTING, ...(spec.routing ? withoutUndefined(spec.routing) : {}) },
    admission: spec.admission ? withoutUndefined(spec.admission) : undefined,
    scaling_group: spec.scaling_group ?? 'default',
    scaling_policy: spec.scaling_policy ? withoutUndefined(spec.scaling_policy) : undefined,
  };
}
