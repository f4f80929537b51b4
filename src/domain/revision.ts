/**
 * Model revisions: what a deployment runs, after service-definition.toml and the API request
 * have been merged (src/revision) and before a definition generator turns it into a
 * SessionSpec (src/session-generators).
 *
 * Two schemas live here:
 * - `revisionLayerSchema`: one layer as written by a user, every field optional and unknown
 *   keys rejected. The root of service-definition.toml, a runtime variant's section (`[vllm]`,
 *   `[vllm.environment]`, ...) and the deployment request's draft revision fields all have
 *   this shape (`revisionRequestSchema` is the same schema under the name the API uses).
 * - `modelRevisionSpecSchema`: the merged, validated result.
 */
import { z } from 'zod';

const BINARY_UNITS: Record<string, number> = {
  '': 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  p: 1024 ** 5,
};

/**
 * Parses a memory size into bytes. Numbers are bytes. Strings take a unit that is always
 * binary, as in Backend.AI: `16g`, `16gb`, `16GiB` and `16G` are all 16 × 2^30 bytes;
 * `512m` is 512 × 2^20; `1.5GiB` is 1.5 × 2^30; a bare `1024` or `1024b` is bytes.
 * Returns null for anything malformed; the result is floored to whole bytes and may be 0.
 */
export function parseMemory(value: unknown): number | null {
  if (typeof value === 'number') {
    return Number.isFinite(value) && value >= 0 ? Math.floor(value) : null;
  }
  if (typeof value !== 'string') return null;
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*(?:([kmgtp])(?:i?b)?|b)?\s*$/i.exec(value);
  if (!m) return null;
  const factor = BINARY_UNITS[(m[2] ?? '').toLowerCase()];
  if (factor === undefined) return null;
  const bytes = Math.floor(Number(m[1]) * factor);
  return Number.isSafeInteger(bytes) ? bytes : null;
}

/** How a value is shown in an error message: `"lots"`, `-1`, `a table`, `nothing`. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (value instanceof Date) return 'a date';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'a table';
  if (typeof value === 'string') return JSON.stringify(value);
  return String(value);
}

function expected(what: string) {
  return (issue: { input?: unknown }) => `expected ${what}, got ${describeValue(issue.input)}`;
}

/** For containers: only a wrong type gets this message; key problems keep their own issue. */
function expectedType(what: string) {
  return (issue: { code?: string; input?: unknown }) =>
    issue.code === 'invalid_type' ? expected(what)(issue) : undefined;
}

const nonEmptyString = z
  .string({ error: expected('a non-empty string') })
  .trim()
  .min(1, { error: expected('a non-empty string') });

const positiveNumber = z
  .number({ error: expected('a positive number') })
  .positive({ error: expected('a positive number') })
  .refine(Number.isFinite, { error: expected('a positive number') });

const nonNegativeNumber = z
  .number({ error: expected('a number >= 0') })
  .min(0, { error: expected('a number >= 0') })
  .refine(Number.isFinite, { error: expected('a number >= 0') });

const positiveInt = z
  .number({ error: expected('a positive integer') })
  .int({ error: expected('a positive integer') })
  .min(1, { error: expected('a positive integer') });

const portNumber = z
  .number({ error: expected('an integer port between 1 and 65535') })
  .int({ error: expected('an integer port between 1 and 65535') })
  .min(1, { error: expected('an integer port between 1 and 65535') })
  .max(65535, { error: expected('an integer port between 1 and 65535') });

const MEMORY_HINT = 'a memory size like "16g", "512m" or "1.5GiB"';

/** A memory size: a string with a binary unit or a number of bytes; must be above zero. */
export const memorySchema = z
  .union([z.string(), z.number()], { error: expected(MEMORY_HINT) })
  .check((ctx) => {
    const bytes = parseMemory(ctx.value);
    if (bytes === null) {
      ctx.issues.push({
        code: 'custom',
        input: ctx.value,
        message: expected(MEMORY_HINT)({ input: ctx.value }),
      });
    } else if (bytes <= 0) {
      ctx.issues.push({
        code: 'custom',
        input: ctx.value,
        message: expected('a memory size above zero')({ input: ctx.value }),
      });
    }
  });

/** HTTP methods a readiness probe may use (POST is sent with an empty body). */
export const HEALTH_CHECK_METHODS = ['GET', 'HEAD', 'POST'] as const;

const healthMethod = z.enum(HEALTH_CHECK_METHODS, {
  error: (issue) =>
    `expected one of ${HEALTH_CHECK_METHODS.join(', ')}, got ${describeValue(issue.input)}`,
});

/** The largest per-revision route weight. */
export const MAX_ROUTE_WEIGHT = 1000;

const routeWeight = z
  .number({ error: expected(`an integer weight between 1 and ${MAX_ROUTE_WEIGHT}`) })
  .int({ error: expected(`an integer weight between 1 and ${MAX_ROUTE_WEIGHT}`) })
  .min(1, { error: expected(`an integer weight between 1 and ${MAX_ROUTE_WEIGHT}`) })
  .max(MAX_ROUTE_WEIGHT, {
    error: expected(`an integer weight between 1 and ${MAX_ROUTE_WEIGHT}`),
  });

const healthPath = nonEmptyString.refine((p) => p.startsWith('/'), {
  error: expected('an HTTP path starting with "/"'),
});

function table<T extends z.ZodRawShape>(shape: T) {
  return z.strictObject(shape, { error: expectedType('a table') }).partial();
}

export const environmentLayerSchema = table({
  image: nonEmptyString,
  architecture: nonEmptyString,
});

export const resourceSlotsLayerSchema = table({
  cpu: positiveNumber,
  mem: memorySchema,
  gpu: nonNegativeNumber,
});

export const healthCheckLayerSchema = table({
  path: healthPath,
  method: healthMethod,
  interval_s: positiveNumber,
  timeout_s: positiveNumber,
  healthy_threshold: positiveInt,
  unhealthy_threshold: positiveInt,
  startup_timeout_s: positiveNumber,
});

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** environ values may be written as numbers or booleans in TOML; they become strings. */
export const environLayerSchema = z.record(
  z.string().regex(ENV_NAME, { error: 'not a valid environment variable name' }),
  z.union([z.string(), z.number(), z.boolean()], {
    error: expected('a string (or a number or boolean, turned into a string)'),
  }),
  { error: expectedType('a table') },
);

const argvSchema = z.union(
  [
    z.string(),
    z.array(z.string({ error: expected('a string') }), { error: expected('an array of strings') }),
  ],
  { error: expected('a command string or an array of strings') },
);

/** Fields one layer may set. Keep in step with docs/definitions.md. */
export const REVISION_LAYER_FIELDS = [
  'environment',
  'resource_slots',
  'environ',
  'health_check',
  'command',
  'extra_args',
  'port',
  'model',
  'model_name',
  'image',
  'architecture',
  'weight',
] as const;

/**
 * One layer: the root of service-definition.toml, a variant's section, or the request's
 * draft revision fields. `image` and `architecture` are shorthands for the same keys in
 * `environment`. Unknown keys are rejected (see docs/definitions.md).
 */
export const revisionLayerSchema = z
  .strictObject(
    {
      environment: environmentLayerSchema,
      resource_slots: resourceSlotsLayerSchema,
      environ: environLayerSchema,
      health_check: healthCheckLayerSchema,
      /** argv, or one string split shell-like (quotes respected). `{port}` is kept. */
      command: argvSchema,
      /** Appended to the runtime's launch command (e.g. `--max-model-len 4096`). */
      extra_args: argvSchema,
      port: portNumber,
      /** What the runtime loads: a hub id or a path relative to the model folder. */
      model: nonEmptyString,
      /** The name the model is served under. */
      model_name: nonEmptyString,
      image: nonEmptyString,
      architecture: nonEmptyString,
      /**
       * Share of the deployment's traffic each replica of this revision gets under the
       * `WEIGHTED` strategy, relative to the other replicas' weights (default 1).
       */
      weight: routeWeight,
    },
    { error: expectedType('a table') },
  )
  .partial();

export type RevisionLayer = z.infer<typeof revisionLayerSchema>;

/** The deployment request's draft revision fields (highest priority). Same shape as a layer. */
export const revisionRequestSchema = revisionLayerSchema;
export type RevisionRequest = RevisionLayer;

/** Used when no layer sets them: a CPU-only replica with 1 core and 1 GiB. */
export const DEFAULT_RESOURCE_SLOTS = { cpu: 1, mem: '1g', gpu: 0 } as const;

/** The merged, validated revision. Health-check fields left out take the variant's defaults. */
export const modelRevisionSpecSchema = z.object({
  runtime_variant: nonEmptyString,
  /** Real path of the model folder (symlinks resolved), inside a configured model root. */
  model_path: z.string().optional(),
  model: nonEmptyString.optional(),
  model_name: nonEmptyString.optional(),
  environment: z
    .object({ image: nonEmptyString.optional(), architecture: nonEmptyString.optional() })
    .prefault({}),
  resource_slots: z
    .object({
      cpu: positiveNumber.default(DEFAULT_RESOURCE_SLOTS.cpu),
      /** As written (`"16gb"`) or bytes; `parseMemory` gives bytes. */
      mem: memorySchema.default(DEFAULT_RESOURCE_SLOTS.mem),
      gpu: nonNegativeNumber.default(DEFAULT_RESOURCE_SLOTS.gpu),
    })
    .prefault({}),
  environ: z.record(z.string(), z.string()).prefault({}),
  command: z.array(z.string()).min(1, { error: 'expected a non-empty command' }).optional(),
  extra_args: z.array(z.string()).optional(),
  port: portNumber.optional(),
  weight: routeWeight.optional(),
  health_check: z
    .object({
      path: healthPath.optional(),
      method: healthMethod.optional(),
      interval_s: positiveNumber.optional(),
      timeout_s: positiveNumber.optional(),
      healthy_threshold: positiveInt.optional(),
      unhealthy_threshold: positiveInt.optional(),
      startup_timeout_s: positiveNumber.optional(),
    })
    .prefault({}),
});

export type ModelRevisionSpec = z.infer<typeof modelRevisionSpecSchema>;
