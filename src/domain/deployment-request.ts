/**
 * The deployment request (POST /v1/deployments, `createFlotilla().deploy`): one zod schema,
 * the single source of truth for validation, the embedded API and the OpenAPI document.
 * Fields that shape the revision (command, image, environ, resource_slots, health_check, ...)
 * are handed to revision generation as the highest-priority layer.
 */
import { z } from 'zod';
// The metrics the autoscaler can compute are the ones a request may name (one list).
import { TARGET_METRICS } from '../scaling/policy.ts';
import { AdmissionModes, AdmissionProfiles, BalancingStrategies } from './routing.ts';
import { parseOrThrow } from './validation.ts';

export const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export const deploymentNameSchema = z.string({ error: 'expected a string' }).regex(NAME_PATTERN, {
  error:
    'expected lower-case letters, digits and "-", 1 to 63 characters, not starting or ending with "-"',
});

/**
 * Names a deployment or an endpoint cannot take: the proxy serves `/{name}/...`, and every
 * process answers these paths itself.
 */
export const RESERVED_NAMES: readonly string[] = ['health', 'ready', 'metrics', 'inspector'];

/** The name of a deployment or an endpoint: a {@link deploymentNameSchema} not reserved. */
export const routableNameSchema = deploymentNameSchema.refine((n) => !RESERVED_NAMES.includes(n), {
  error: (issue) =>
    `"${String(issue.input)}" is reserved (${RESERVED_NAMES.join(', ')} are the processes' own paths)`,
});

/** The largest id or name a lookup accepts. */
export const MAX_ID_LENGTH = 128;

/**
 * A deployment id or name as a lookup key (path parameter, embedded API argument): 1 to 128
 * characters, no control characters (a NUL byte would otherwise reach PostgreSQL).
 */
export const idOrNameSchema = z
  .string({ error: 'expected a string' })
  .min(1, { error: 'expected a deployment id or name' })
  .max(MAX_ID_LENGTH, { error: `expected at most ${MAX_ID_LENGTH} characters` })
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing them is the point
  .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), {
    error: 'must not contain control characters',
  });

/** The largest replica count any field accepts. */
export const MAX_REPLICAS = 1000;

/** One entry of `routing.allowed_path_prefixes`: an absolute path prefix such as `/v1/`. */
const pathPrefixSchema = z
  .string()
  .min(1)
  .max(256)
  .refine((s) => s.startsWith('/'), { error: 'must start with /' })
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing them is the point
  .refine((s) => !/[\u0000-\u0020\u007f?#%\\]/.test(s), {
    error: 'must not contain spaces, control characters, ?, #, % or \\',
  })
  .refine((s) => !s.split('/').some((seg) => seg === '.' || seg === '..'), {
    error: 'must not contain . or .. segments',
  });

export const routingSchema = z.strictObject({
  strategy: z.enum(BalancingStrategies).optional(),
  request_timeout_s: z.number().positive().max(3600).optional(),
  retries: z.int().min(0).max(10).optional(),
  allowed_path_prefixes: z.array(pathPrefixSchema).max(100).optional(),
});

export const admissionSchema = z.strictObject({
  profile: z
    .enum(AdmissionProfiles, { error: `expected one of ${AdmissionProfiles.join(', ')}` })
    .optional(),
  mode: z
    .enum(AdmissionModes, { error: `expected one of ${AdmissionModes.join(', ')}` })
    .optional(),
  request_timeout_s: z.number().positive().max(3600).optional(),
  max_queue_size: z.int().min(0).max(100_000).optional(),
  max_concurrent_requests: z.int().min(1).max(10_000).optional(),
  queue_rejection_threshold: z.number().min(0).max(1).optional(),
  rejection_threshold: z.number().min(0).max(1).optional(),
  queue_timeout_s: z.number().positive().max(3600).optional(),
});

/** README "Autoscaling": the fields, their defaults and units. */
export const scalingPolicySchema = z
  .strictObject({
    min_replicas: z.int().min(0).max(MAX_REPLICAS).optional(),
    max_replicas: z.int().min(1).max(MAX_REPLICAS).optional(),
    target_metric: z
      .enum(TARGET_METRICS, {
        error: (issue) =>
          `unknown target_metric ${JSON.stringify(issue.input)}: expected one of ${TARGET_METRICS.join(', ')}`,
      })
      .optional(),
    target_value: z.number().positive().max(1e9).optional(),
    scale_up_threshold: z.number().positive().max(1e9).optional(),
    scale_down_threshold: z.number().min(0).max(1e9).optional(),
    cooldown_period: z.number().min(0).max(86_400).optional(),
    max_step: z.int().min(1).max(MAX_REPLICAS).optional(),
    stable_window_s: z.number().min(1).max(600).optional(),
    panic_window_s: z.number().min(1).max(600).optional(),
    /** Idle seconds before a deployment with min_replicas 0 goes to zero (scale to zero). */
    scale_to_zero_after_s: z.number().positive().max(86_400).optional(),
  })
  .superRefine((p, ctx) => {
    if (
      p.scale_up_threshold !== undefined &&
      p.scale_down_threshold !== undefined &&
      p.scale_down_threshold >= p.scale_up_threshold
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['scale_down_threshold'],
        message: `must be below scale_up_threshold (${p.scale_up_threshold})`,
      });
    }
    if (
      p.stable_window_s !== undefined &&
      p.panic_window_s !== undefined &&
      p.panic_window_s > p.stable_window_s
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['panic_window_s'],
        message: `must not exceed stable_window_s (${p.stable_window_s})`,
      });
    }
  });

/** Keys handed to revision generation (validated there, with every problem reported). */
export const REVISION_REQUEST_KEYS = [
  'command',
  'image',
  'environ',
  'resource_slots',
  'health_check',
  'environment',
  'extra_args',
  'port',
  'model',
  'model_name',
  'architecture',
  'weight',
] as const;

/**
 * Adds an issue at every string (or key) that holds a NUL byte: PostgreSQL's text and jsonb
 * cannot store one, so it is refused here, at its field, instead of by the store.
 */
function refuseNulBytes(value: unknown, ctx: z.RefinementCtx): void {
  const walk = (v: unknown, path: PropertyKey[]) => {
    if (typeof v === 'string') {
      if (v.includes('\u0000')) {
        ctx.addIssue({ code: 'custom', path, message: 'must not contain a NUL byte' });
      }
    } else if (Array.isArray(v)) {
      for (const [i, item] of v.entries()) walk(item, [...path, i]);
    } else if (v !== null && typeof v === 'object') {
      for (const [k, item] of Object.entries(v)) {
        if (k.includes('\u0000')) {
          ctx.addIssue({
            code: 'custom',
            path: [...path, k],
            message: 'name must not contain a NUL byte',
          });
        } else walk(item, [...path, k]);
      }
    }
  };
  walk(value, []);
}

const deploymentRequestObject = z.strictObject({
  name: routableNameSchema,
  runtime_variant: z.string({ error: 'expected a string' }).min(1).default('cmd'),
  model_path: z.string().min(1).optional(),
  /** Inline service-definition TOML text, or the same as a JSON object. */
  service_definition: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
  replicas: z.int({ error: 'expected an integer' }).min(0).max(MAX_REPLICAS).default(1),
  min_replicas: z.int().min(0).max(MAX_REPLICAS).optional(),
  max_replicas: z.int().min(1).max(MAX_REPLICAS).optional(),
  routing: routingSchema.optional(),
  admission: admissionSchema.optional(),
  scaling_policy: scalingPolicySchema.optional(),
  scaling_group: deploymentNameSchema.default('default'),
  // Revision fields: shape checked here loosely, in depth by revision generation.
  command: z.union([z.string(), z.array(z.string())]).optional(),
  image: z.string().optional(),
  environ: z.record(z.string(), z.string({ error: 'expected a string value' })).optional(),
  resource_slots: z.record(z.string(), z.unknown()).optional(),
  health_check: z.record(z.string(), z.unknown()).optional(),
  environment: z.record(z.string(), z.unknown()).optional(),
  extra_args: z.union([z.string(), z.array(z.string())]).optional(),
  port: z.int().min(1).max(65535).optional(),
  model: z.string().optional(),
  model_name: z.string().optional(),
  architecture: z.string().optional(),
  /** Route weight of this revision's replicas (1..1000); checked by revision generation. */
  weight: z.number().optional(),
});

export const deploymentRequestSchema = deploymentRequestObject.superRefine(refuseNulBytes);

export type DeploymentRequest = z.input<typeof deploymentRequestSchema>;
export type ParsedDeploymentRequest = z.output<typeof deploymentRequestSchema>;

/**
 * PATCH: a new revision when what the replicas run changes; `min_replicas`, `max_replicas`
 * and `scaling_policy` are applied without one. Name and scaling group are fixed; the replica
 * count changes through scale.
 */
export const deploymentUpdateSchema = deploymentRequestObject
  .omit({ name: true, replicas: true, scaling_group: true })
  .partial()
  .superRefine(refuseNulBytes);
export type DeploymentUpdate = z.input<typeof deploymentUpdateSchema>;

export const scaleRequestSchema = z.strictObject({
  replicas: z.int({ error: 'expected an integer' }).min(0).max(MAX_REPLICAS),
});

export const scalingGroupSchema = z
  .strictObject({
    route_cleanup_target_statuses: z
      .array(z.enum(['healthy', 'unhealthy', 'degraded']))
      .max(3)
      .optional(),
    settings: z.record(z.string(), z.unknown()).optional(),
  })
  .superRefine(refuseNulBytes);

export const endpointRequestSchema = z.strictObject({
  name: routableNameSchema,
  backends: z
    .array(z.strictObject({ deployment: idOrNameSchema, weight: z.number().min(0).max(1000) }))
    .max(64)
    .default([]),
});

/** Path parameters and embedded-API arguments that look a deployment up by id or name. */
export const idParamsSchema = z.object({
  id: idOrNameSchema.describe('deployment id or name'),
});

/** Path parameters and embedded-API arguments that name an endpoint or a scaling group. */
export const nameParamsSchema = z.object({ name: deploymentNameSchema });

/** A deployment id or name checked as the HTTP API checks its `:id` (details at `id`). */
export function parseIdOrName(idOrName: unknown): string {
  return parseOrThrow(idParamsSchema, { id: idOrName }).id;
}

/** An endpoint or scaling-group name checked as the HTTP API checks `:name`. */
export function parseName(name: unknown): string {
  return parseOrThrow(nameParamsSchema, { name }).name;
}

/**
 * What revision generation reads from a request (src/revision): the variant, the model
 * folder, an inline definition, and the revision fields as the highest-priority layer.
 */
export function revisionSourceOf(
  req: Record<string, unknown>,
  variant: string,
): {
  runtime_variant: string;
  model_path: string | undefined;
  service_definition: string | Record<string, unknown> | undefined;
  request: Record<string, unknown>;
} {
  const request: Record<string, unknown> = {};
  for (const k of REVISION_REQUEST_KEYS) if (req[k] !== undefined) request[k] = req[k];
  return {
    runtime_variant: variant,
    model_path: req.model_path as string | undefined,
    service_definition: req.service_definition as string | Record<string, unknown> | undefined,
    request,
  };
}

/**
 * PATCH: the stored request with the fields the caller sent on top. Only fields present in
 * `sent` count, so a zod default (runtime_variant) never overwrites the stored value.
 */
export function mergeUpdateRequest(
  stored: Record<string, unknown>,
  sent: object,
  parsed: Record<string, unknown>,
): Record<string, unknown> {
  const given = Object.fromEntries(Object.entries(parsed).filter(([k]) => Object.hasOwn(sent, k)));
  return { ...stored, ...given };
}
