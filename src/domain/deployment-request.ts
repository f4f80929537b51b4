/**
 * The deployment request (POST /v1/deployments, `createFlotilla().deploy`): one zod schema,
 * the single source of truth for validation, the embedded API and the OpenAPI document.
 * Fields that shape the revision (command, image, environ, resource_slots, health_check, ...)
 * are handed to revision generation as the highest-priority layer.
 */
import { z } from 'zod';
import { BalancingStrategies } from './routing.ts';

export const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export const deploymentNameSchema = z.string({ error: 'expected a string' }).regex(NAME_PATTERN, {
  error:
    'expected lower-case letters, digits and "-", 1 to 63 characters, not starting or ending with "-"',
});

export const routingSchema = z.strictObject({
  strategy: z.enum(BalancingStrategies).optional(),
  request_timeout_s: z.number().positive().max(3600).optional(),
  retries: z.int().min(0).max(10).optional(),
});

export const admissionSchema = z.strictObject({
  request_timeout_s: z.number().positive().max(3600).optional(),
  max_queue_size: z.int().min(0).max(100_000).optional(),
  max_concurrent_requests: z.int().min(1).max(10_000).optional(),
  queue_rejection_threshold: z.number().min(0).max(1).optional(),
  rejection_threshold: z.number().min(0).max(1).optional(),
  queue_timeout_s: z.number().positive().max(3600).optional(),
});

export const scalingPolicySchema = z.strictObject({
  min_replicas: z.int().min(0).optional(),
  max_replicas: z.int().min(1).optional(),
  target_metric: z.enum(['inflight', 'requests', 'cpu', 'memory', 'latency']).optional(),
  target_value: z.number().positive().optional(),
  scale_up_threshold: z.number().positive().optional(),
  scale_down_threshold: z.number().min(0).optional(),
  cooldown_period: z.number().min(0).optional(),
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
] as const;

export const deploymentRequestSchema = z.strictObject({
  name: deploymentNameSchema,
  runtime_variant: z.string({ error: 'expected a string' }).min(1).default('cmd'),
  model_path: z.string().min(1).optional(),
  /** Inline service-definition TOML text, or the same as a JSON object. */
  service_definition: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
  replicas: z.int({ error: 'expected an integer' }).min(0).max(1000).default(1),
  min_replicas: z.int().min(0).max(1000).optional(),
  max_replicas: z.int().min(1).max(1000).optional(),
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
});

export type DeploymentRequest = z.input<typeof deploymentRequestSchema>;
export type ParsedDeploymentRequest = z.output<typeof deploymentRequestSchema>;

/**
 * PATCH: a new revision when what the replicas run changes; `min_replicas`, `max_replicas`
 * and `scaling_policy` are applied without one. Name and scaling group are fixed; the replica
 * count changes through scale.
 */
export const deploymentUpdateSchema = deploymentRequestSchema
  .omit({ name: true, replicas: true, scaling_group: true })
  .partial();
export type DeploymentUpdate = z.input<typeof deploymentUpdateSchema>;

export const scaleRequestSchema = z.strictObject({
  replicas: z.int({ error: 'expected an integer' }).min(0).max(1000),
});

export const scalingGroupSchema = z.strictObject({
  route_cleanup_target_statuses: z
    .array(z.enum(['healthy', 'unhealthy', 'degraded']))
    .max(3)
    .optional(),
  settings: z.record(z.string(), z.unknown()).optional(),
});

export const endpointRequestSchema = z.strictObject({
  name: deploymentNameSchema,
  backends: z
    .array(z.strictObject({ deployment: z.string().min(1), weight: z.number().min(0).max(1000) }))
    .max(64)
    .default([]),
});
