/**
 * Revision generation: a deployment request (plus the model folder's service-definition.toml,
 * when there is one) becomes a validated ModelRevisionSpec. Every problem found is reported at
 * once, as ErrorDetails, never as a stack trace.
 */

import { type ErrorDetail, FlotillaError } from '../domain/errors.ts';
import {
  type ModelRevisionSpec,
  modelRevisionSpecSchema,
  parseMemory,
} from '../domain/revision.ts';
import { canonicalVariant, getGenerator, runtimeVariants } from '../session-generators/index.ts';
import { issuesToDetails, withSource } from './issues.ts';
import {
  checkLayer,
  isPlainObject,
  type Layer,
  mergeRevisionLayers,
  splitDefinition,
} from './layers.ts';
import {
  checkInlineDefinition,
  DEFINITION_FILE,
  parseDefinitionToml,
  readDefinitionFile,
  resolveModelPath,
} from './load-definition.ts';

export interface RevisionInput {
  runtime_variant: string;
  /** The model folder (or a .toml file in it), absolute or relative to a model root. */
  model_path?: string | undefined;
  /** Inline TOML text or an already parsed table; replaces the folder's definition file. */
  service_definition?: string | Record<string, unknown> | undefined;
  /** The request's draft revision fields; highest priority. */
  request: Record<string, unknown>;
}

export interface RevisionOptions {
  /** Folders model_path must stay inside (after symlinks). Default: the current directory. */
  modelRoots: string[];
}

export interface RevisionResult {
  revision: ModelRevisionSpec;
  warnings: string[];
  /** resource_slots keys some layer gave (the rest are defaults); see SessionSpec.declared. */
  declared: Array<'cpu' | 'mem' | 'gpu'>;
}

const INLINE_LABEL = 'service definition';
const ONE_MIB = 1024 * 1024;

/**
 * Throws FlotillaError('invalid_toml') when the definition is not valid TOML, otherwise
 * FlotillaError('validation'); either way `details` lists every problem found.
 */
export async function generateRevision(
  input: RevisionInput,
  opts: RevisionOptions,
): Promise<RevisionResult> {
  const details: ErrorDetail[] = [];
  const warnings: string[] = [];
  let tomlBroken = false;

  const variant = canonicalVariant(String(input.runtime_variant ?? ''));
  const generator = getGenerator(variant);
  if (!generator) {
    details.push({
      path: 'runtime_variant',
      message: `unknown runtime variant ${JSON.stringify(input.runtime_variant)}; valid variants: ${runtimeVariants.join(', ')}`,
    });
  }

  // 1. Locate the model folder and its definition.
  let folder: string | undefined;
  let doc: Record<string, unknown> | undefined;
  let docLabel = INLINE_LABEL;
  const roots = opts.modelRoots.length > 0 ? opts.modelRoots : [process.cwd()];
  if (input.model_path !== undefined) {
    const loc = await resolveModelPath(String(input.model_path), roots);
    if (!loc.ok) details.push(...loc.details);
    else {
      folder = loc.value.folder;
      if (input.service_definition === undefined) {
        docLabel = loc.value.explicitFile
          ? loc.value.definitionFile.split(/[\\/]/).pop()!
          : DEFINITION_FILE;
        const text = await readDefinitionFile(loc.value);
        if (!text.ok) details.push(...text.details);
        else if (text.value === undefined) {
          warnings.push(
            `no ${DEFINITION_FILE} in the model folder; the request supplies everything`,
          );
        } else {
          const parsed = parseDefinitionToml(text.value, docLabel);
          if (parsed.ok) doc = parsed.value;
          else {
            tomlBroken = true;
            details.push(...parsed.details);
          }
        }
      }
    }
  }
  if (typeof input.service_definition === 'string') {
    const sized = checkInlineDefinition(input.service_definition, INLINE_LABEL);
    if (!sized.ok) details.push(...sized.details);
    else {
      const parsed = parseDefinitionToml(sized.value, INLINE_LABEL);
      if (parsed.ok) doc = parsed.value;
      else {
        tomlBroken = true;
        details.push(...parsed.details);
      }
    }
  } else if (input.service_definition !== undefined) {
    if (isPlainObject(input.service_definition)) doc = input.service_definition;
    else details.push({ path: 'service_definition', message: 'expected TOML text or a table' });
  }

  // 2. Check every layer on its own, so a problem is reported where it was written.
  let root: Layer = {};
  let section: Layer = {};
  if (doc) {
    const split = splitDefinition(doc, runtimeVariants, canonicalVariant);
    for (const dup of split.duplicates) {
      details.push({
        path: dup,
        message: withSource('names a runtime variant that has a section already', docLabel),
      });
    }
    const rootCheck = checkLayer(split.root, {
      prefix: [],
      source: docLabel,
      extraTopKeys: runtimeVariants,
    });
    details.push(...rootCheck.details);
    root = rootCheck.layer;
    // Every variant's section is checked, not only the one deployed: the file is one document.
    for (const [name, { key, value }] of split.sections) {
      const check = checkLayer(value, { prefix: [key], source: docLabel });
      details.push(...check.details);
      if (name === variant) section = check.layer;
    }
  }
  let request: Layer = {};
  if (input.request !== undefined && !isPlainObject(input.request)) {
    details.push({ path: 'request', message: 'expected an object with the revision fields' });
  } else {
    const check = checkLayer(input.request ?? {}, { prefix: [] });
    details.push(...check.details);
    request = check.layer;
  }
  if (details.length > 0) throw invalid(details, tomlBroken);

  // 3. Merge and validate the result.
  const merged = {
    ...mergeRevisionLayers(root, section, request),
    runtime_variant: variant,
    ...(folder !== undefined ? { model_path: folder } : {}),
  };
  const parsed = modelRevisionSpecSchema.safeParse(merged, { reportInput: true });
  if (!parsed.success) {
    throw invalid(
      issuesToDetails(parsed.error.issues, { prefix: [], allowedKeys: () => [] }),
      false,
    );
  }
  const revision = parsed.data;

  // 4. What this variant needs that nobody gave.
  const missing = generator!.validate(revision);
  if (missing.length > 0) {
    const where = doc
      ? `set it in ${docLabel} (at the root or in [${variant}]) or in the request`
      : input.model_path !== undefined
        ? `no ${DEFINITION_FILE} was found, so the request must give it`
        : 'the request must give it';
    throw invalid(
      missing.map((d) => ({ path: d.path, message: `${d.message}; ${where}` })),
      false,
    );
  }

  warnings.push(...revisionWarnings(revision));
  const declared = (['cpu', 'mem', 'gpu'] as const).filter((k) =>
    [root, section, request].some((l) => isPlainObject(l.resource_slots) && k in l.resource_slots),
  );
  return { revision, warnings, declared };
}

function revisionWarnings(revision: ModelRevisionSpec): string[] {
  const warnings: string[] = [];
  const mem = revision.resource_slots.mem;
  if (typeof mem === 'number' && mem < ONE_MIB) {
    warnings.push(`resource_slots.mem = ${mem} is read as bytes; write "${mem}g" for ${mem} GiB`);
  }
  const bytes = parseMemory(mem);
  if (typeof mem === 'string' && bytes !== null && bytes < ONE_MIB) {
    warnings.push(`resource_slots.mem = ${JSON.stringify(mem)} is less than 1 MiB`);
  }
  const hc = revision.health_check;
  if (hc.timeout_s !== undefined && hc.interval_s !== undefined && hc.timeout_s > hc.interval_s) {
    warnings.push(
      `health_check.timeout_s (${hc.timeout_s}) is longer than interval_s (${hc.interval_s}); checks will overlap`,
    );
  }
  return warnings;
}

function invalid(details: ErrorDetail[], tomlBroken: boolean): FlotillaError {
  const head = details
    .slice(0, 3)
    .map((d) => `${d.path}: ${d.message}`)
    .join('; ');
  const more = details.length > 3 ? ` (and ${details.length - 3} more)` : '';
  const message =
    details.length === 1
      ? `invalid revision: ${head}`
      : `invalid revision, ${details.length} problems: ${head}${more}`;
  return new FlotillaError(tomlBroken ? 'invalid_toml' : 'validation', message, { details });
}
