/**
 * Schemas of the HTTP API besides the request bodies (which come from
 * src/domain/deployment-request.ts): path parameters, query strings and responses. The
 * response schemas document the API in /v1/openapi.json; responses are serialized with
 * JSON.stringify, and a unit test parses real views with them so they cannot drift.
 */
import { z } from 'zod';
import {
  endpointRequestSchema,
  idParamsSchema,
  nameParamsSchema,
} from '../domain/deployment-request.ts';

/** The path parameters are the embedded API's lookup arguments, checked the same way. */
export { idParamsSchema, nameParamsSchema };

export const errorSchema = z
  .object({
    error: z.object({
      code: z.string(),
      message: z.string(),
      details: z.array(z.object({ path: z.string(), message: z.string() })),
    }),
  })
  .meta({ id: 'Error' });

const flag = z
  .enum(['true', 'false', '1', '0'])
  .transform((v) => v === 'true' || v === '1')
  .optional();

export const listQuerySchema = z.object({
  include_deleted: flag.describe('also list TERMINATED deployments'),
});

export const eventsQuerySchema = z.object({
  after: z.coerce.number().int().min(0).optional().describe('exclusive cursor: a transition id'),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

export const logsQuerySchema = z.object({
  replica: z.string().min(1).max(128).optional(),
  /** `true`: the output of replicas that have exited (kept for the last few per deployment). */
  previous: z.enum(['true', 'false']).optional(),
  tail_bytes: z.coerce
    .number()
    .int()
    .min(1)
    .max(8 * 1024 * 1024)
    .optional(),
});

export const endpointPutSchema = endpointRequestSchema.extend({
  name: endpointRequestSchema.shape.name.optional().describe('must equal the path name if given'),
});

const lastHealthSchema = z
  .object({ class: z.string(), reason: z.string(), at: z.string() })
  .nullable();

export const replicaViewSchema = z.object({
  id: z.string(),
  state: z.string(),
  endpoint: z.string().nullable(),
  revision_id: z.string(),
  route_id: z.string(),
  reason: z.string().nullable(),
  restarts: z.number(),
  phase: z.string().optional().describe('the state with its step, e.g. UNHEALTHY.backoff'),
  deadline_at: z.string().nullable().optional().describe("when the step's deadline falls"),
});

export const routeViewSchema = z.object({
  id: z.string(),
  replica_id: z.string(),
  state: z.string(),
  weight: z.number(),
  last_health: lastHealthSchema,
  reason: z.string().nullable(),
  deadline_at: z.string().nullable().optional().describe('the drain deadline while TERMINATING'),
});

export const loadSchema = z
  .object({
    level: z.string(),
    inflight: z.number(),
    queued: z.number(),
    capacity: z.number(),
  })
  .nullable()
  .describe("the in-process proxy's admission status; null when this process runs no proxy");

export const deploymentViewSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    state: z.string(),
    reason: z.string().nullable().describe('why the deployment is not RUNNING; null when it is'),
    deadline_at: z
      .string()
      .nullable()
      .optional()
      .describe('when the current step ends (provisioning timeout, retry)'),
    runtime_variant: z.string(),
    target_replicas: z.number(),
    current_replicas: z.number(),
    healthy_replicas: z.number(),
    min_replicas: z.number(),
    max_replicas: z.number(),
    revision_id: z.string().nullable(),
    revision: z.record(z.string(), z.unknown()).nullable().describe('the merged revision'),
    session: z.record(z.string(), z.unknown()).nullable(),
    routing: z.object({
      strategy: z.string(),
      request_timeout_s: z.number(),
      retries: z.number(),
    }),
    admission: z
      .record(z.string(), z.number())
      .describe("admission settings given for this deployment; the proxy's defaults fill the rest"),
    scaling_group: z.string(),
    replicas: z.array(replicaViewSchema),
    routes: z.array(routeViewSchema),
    created_at: z.string(),
    updated_at: z.string(),
    deleted_at: z.string().nullable(),
    load: loadSchema.optional(),
    scale_to_zero: z
      .object({
        after_s: z.number(),
        at_zero: z.boolean(),
        message: z.string().nullable(),
      })
      .optional()
      .describe('scale to zero (scaling_policy.scale_to_zero_after_s); absent when not set'),

    autoscaling: z
      .object({
        metric: z.string(),
        state: z.enum(['active', 'waiting', 'paused']),
        last: z.string().nullable().describe('the last evaluation, with its inputs'),
        panic_until: z.string().nullable().describe('concurrency: panic mode until'),
      })
      .optional()
      .describe('the autoscaler (README "Autoscaling"); absent without a scaling_policy'),
  })
  .meta({ id: 'Deployment' });

export const deploymentListSchema = z.object({ items: z.array(deploymentViewSchema) });

export const eventsSchema = z.object({
  items: z.array(
    z.object({
      id: z.number(),
      actor_id: z.string(),
      kind: z.string(),
      deployment_id: z.string(),
      from_state: z.string().nullable(),
      to_state: z.string(),
      event: z.string(),
      reason: z.string().nullable(),
      at: z.string(),
    }),
  ),
  next: z.number().nullable().describe('cursor of the next page (`after`); null on the last'),
});

export const previewSchema = z.object({
  revision: z.record(z.string(), z.unknown()),
  session: z.record(z.string(), z.unknown()),
  warnings: z.array(z.string()),
});

export const scalingGroupViewSchema = z.object({
  name: z.string(),
  route_cleanup_target_statuses: z.array(z.string()),
  settings: z.record(z.string(), z.unknown()),
  updated_at: z.string().nullable(),
});

export const endpointViewSchema = z.object({
  name: z.string(),
  backends: z.array(z.object({ deployment: z.string(), weight: z.number() })),
  created_at: z.string(),
  updated_at: z.string(),
});

export const endpointListSchema = z.object({ items: z.array(endpointViewSchema) });

export const readySchema = z.object({
  ready: z.boolean(),
  missing: z.array(z.string()),
  warnings: z.array(z.string()).optional(),
});
