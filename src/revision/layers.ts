/**
 * The three layers of a revision and how they merge:
 *   root of service-definition.toml  <  the runtime variant's section  <  the API request.
 * Tables (`environment`, `resource_slots`, `environ`, `health_check`) merge key by key; every
 * other value (strings, numbers, `command`, `extra_args`) is replaced whole by a higher layer.
 */
import type { ErrorDetail } from '../domain/errors.ts';
import {
  environmentLayerSchema,
  healthCheckLayerSchema,
  REVISION_LAYER_FIELDS,
  resourceSlotsLayerSchema,
  revisionLayerSchema,
} from '../domain/revision.ts';
import { issuesToDetails, joinPath, withSource } from './issues.ts';
import { splitCommand } from './split-command.ts';

export type Layer = Record<string, unknown>;

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Date) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Sets an own data property even for keys like `__proto__` (an environ key may be one). */
function put(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

function copy(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(copy);
  if (isPlainObject(v)) return deepMerge({}, v);
  return v;
}

function deepMerge(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(base)) put(out, k, copy(base[k]));
  for (const k of Object.keys(over)) {
    const v = over[k];
    if (v === undefined) continue;
    const cur = Object.hasOwn(out, k) ? out[k] : undefined;
    put(out, k, isPlainObject(v) && isPlainObject(cur) ? deepMerge(cur, v) : copy(v));
  }
  return out;
}

/** Moves the `image` / `architecture` shorthands into `environment` (the shorthand wins). */
function liftShorthands(layer: Layer): Layer {
  if (!('image' in layer) && !('architecture' in layer)) return layer;
  const { image, architecture, ...rest } = layer;
  const env = isPlainObject(rest.environment) ? rest.environment : {};
  const lifted: Record<string, unknown> = {};
  if (image !== undefined) lifted.image = image;
  if (architecture !== undefined) lifted.architecture = architecture;
  return { ...rest, environment: deepMerge(env, lifted) };
}

/**
 * Merges the three layers; pure and synchronous. A value set in `request` always wins, then
 * `variantSection`, then `root`. Idempotent: merging the result again with the same
 * variant section and request gives the same result.
 */
export function mergeRevisionLayers(root: Layer, variantSection: Layer, request: Layer): Layer {
  return deepMerge(
    deepMerge(liftShorthands(root), liftShorthands(variantSection)),
    liftShorthands(request),
  );
}

const TABLE_KEYS: Record<string, readonly string[]> = {
  environment: Object.keys(environmentLayerSchema.shape),
  resource_slots: Object.keys(resourceSlotsLayerSchema.shape),
  health_check: Object.keys(healthCheckLayerSchema.shape),
};

export interface LayerWhere {
  prefix: readonly string[];
  source?: string | undefined;
  /** Extra keys allowed at the top of this layer (variant sections at the file root). */
  extraTopKeys?: readonly string[];
}

/**
 * Validates one layer against the layer schema and normalizes it: shorthands lifted into
 * `environment`, environ values made strings, command strings split into argv.
 */
export function checkLayer(
  raw: unknown,
  where: LayerWhere,
): { layer: Layer; details: ErrorDetail[] } {
  const result = revisionLayerSchema.safeParse(raw, { reportInput: true });
  const details: ErrorDetail[] = [];
  if (!result.success) {
    details.push(
      ...issuesToDetails(result.error.issues, {
        prefix: where.prefix,
        source: where.source,
        allowedKeys: (path) =>
          path.length === 0
            ? [...REVISION_LAYER_FIELDS, ...(where.extraTopKeys ?? [])]
            : (TABLE_KEYS[String(path[0])] ?? []),
      }),
    );
    return { layer: {}, details };
  }
  const layer: Layer = { ...result.data };
  const env = result.data.environment;
  for (const key of ['image', 'architecture'] as const) {
    const short = result.data[key];
    const long = env?.[key];
    if (short !== undefined && long !== undefined && short !== long) {
      details.push({
        path: joinPath([...where.prefix, key]),
        message: withSource(
          `conflicts with environment.${key} (${JSON.stringify(long)}) in the same layer; give one`,
          where.source,
        ),
      });
    }
  }
  if (result.data.environ) {
    const environ: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(result.data.environ)) put(environ, k, String(v));
    layer.environ = environ;
  }
  for (const key of ['command', 'extra_args'] as const) {
    const v = result.data[key];
    if (typeof v !== 'string') continue;
    try {
      layer[key] = splitCommand(v);
    } catch (err) {
      details.push({
        path: joinPath([...where.prefix, key]),
        message: withSource(`cannot split into arguments: ${(err as Error).message}`, where.source),
      });
    }
  }
  return { layer: liftShorthands(layer), details };
}

/**
 * Splits a parsed service definition into its root layer and its variant sections. A root key
 * whose name is a runtime variant (case and `_`/`-` ignored) is that variant's section.
 */
export function splitDefinition(
  doc: Record<string, unknown>,
  variants: readonly string[],
  canonical: (name: string) => string,
): {
  root: Layer;
  sections: Map<string, { key: string; value: unknown }>;
  /** Section keys that name a variant already given by another key (`tgi_x` and `tgi-x`). */
  duplicates: string[];
} {
  const root: Layer = {};
  const sections = new Map<string, { key: string; value: unknown }>();
  const duplicates: string[] = [];
  for (const key of Object.keys(doc)) {
    const c = canonical(key);
    if (variants.includes(c) && !(REVISION_LAYER_FIELDS as readonly string[]).includes(key)) {
      if (sections.has(c)) duplicates.push(key);
      else sections.set(c, { key, value: doc[key] });
    } else {
      put(root, key, doc[key]);
    }
  }
  return { root, sections, duplicates };
}
