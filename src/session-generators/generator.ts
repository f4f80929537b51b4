/**
 * The port every definition generator implements, and the helpers they share. A generator
 * knows one runtime: its launch command, port flag, default port and readiness path.
 */
import path from 'node:path';
import type { ErrorDetail } from '../domain/errors.ts';
import { type ModelRevisionSpec, parseMemory } from '../domain/revision.ts';
import { DEFAULT_HEALTH_CHECK, type SessionSpec } from '../domain/session.ts';

export interface GeneratorDefaults {
  /** Port the runtime listens on when the revision gives none. */
  port: number;
  /** Readiness path probed when the revision gives none. */
  healthPath: string;
}

/**
 * Turns a validated ModelRevisionSpec into a SessionSpec for one runtime variant.
 * `validate` lists what the revision lacks for this variant (empty when usable); the revision
 * generator reports those problems at deploy time. `generate` is pure and may assume
 * `validate` returned nothing; it throws only on a bug.
 */
export interface SessionGenerator {
  /** Canonical variant name: lower case, words joined by `-`. */
  readonly variant: string;
  /** One line for help texts. */
  readonly summary: string;
  readonly defaults: GeneratorDefaults;
  validate(revision: ModelRevisionSpec): ErrorDetail[];
  generate(revision: ModelRevisionSpec): SessionSpec;
}

/** What the runtime should load: `model`, else the model folder, else `model_name`. */
export function modelSource(revision: ModelRevisionSpec): string | undefined {
  return revision.model ?? revision.model_path ?? revision.model_name;
}

/**
 * The name clients use in requests. `model_name`, else `model`, else the model folder's
 * base name (a server-side path is no name for clients).
 */
export function servedModelName(revision: ModelRevisionSpec): string | undefined {
  if (revision.model_name) return revision.model_name;
  if (revision.model) return revision.model;
  return revision.model_path ? path.basename(revision.model_path) : undefined;
}

export function requireModel(revision: ModelRevisionSpec, variant: string): ErrorDetail[] {
  if (modelSource(revision) !== undefined) return [];
  return [
    {
      path: 'model',
      message: `required for the ${variant} variant: give a model folder (model_path), "model" (hub id or path) or "model_name"`,
    },
  ];
}

/**
 * The flags vLLM and SGLang share: listen on every interface at `{port}`, and the name clients
 * use in requests when there is one (`--served-model-name`).
 */
export function hostPortAndNameFlags(revision: ModelRevisionSpec): string[] {
  const name = servedModelName(revision);
  return ['--host', '0.0.0.0', '--port', '{port}', ...(name ? ['--served-model-name', name] : [])];
}

/**
 * A generator for a runtime that loads a model (vLLM, SGLang, TGI, MAX): usable when the
 * revision names a model or brings its own command; `argv` is the runtime's launch command for
 * the model it is given (`modelSource`).
 */
export function modelServerGenerator(spec: {
  variant: string;
  summary: string;
  defaults: GeneratorDefaults;
  argv: (model: string, revision: ModelRevisionSpec) => string[];
}): SessionGenerator {
  const { variant, summary, defaults, argv } = spec;
  return {
    variant,
    summary,
    defaults,
    validate: (revision) => (revision.command ? [] : requireModel(revision, variant)),
    generate: (revision) =>
      buildSession(revision, defaults, argv(modelSource(revision) ?? '', revision)),
  };
}

export function requireField(
  present: boolean,
  field: string,
  variant: string,
  why = '',
): ErrorDetail[] {
  return present
    ? []
    : [{ path: field, message: `required for the ${variant} variant${why ? `: ${why}` : ''}` }];
}

/**
 * The parts of a SessionSpec every variant fills the same way. `command` is the runtime's
 * argv unless the revision brings its own command; `extra_args` are appended to either.
 */
export function buildSession(
  revision: ModelRevisionSpec,
  defaults: GeneratorDefaults,
  runtimeArgv: string[],
  runtimeEnviron: Record<string, string> = {},
): SessionSpec {
  const mem = parseMemory(revision.resource_slots.mem);
  if (mem === null || mem <= 0) {
    throw new Error(
      `resource_slots.mem ${JSON.stringify(revision.resource_slots.mem)} is not a memory size`,
    );
  }
  const argv = [...(revision.command ?? runtimeArgv), ...(revision.extra_args ?? [])];
  return {
    runtime_variant: revision.runtime_variant,
    command: argv,
    environ: { ...runtimeEnviron, ...revision.environ },
    image: revision.environment.image,
    port: revision.port ?? defaults.port,
    workdir: revision.model_path,
    health: {
      ...DEFAULT_HEALTH_CHECK,
      path: defaults.healthPath,
      ...definedOnly(revision.health_check),
    },
    resources: { cpu: revision.resource_slots.cpu, mem, gpu: revision.resource_slots.gpu },
    ...(revision.weight !== undefined ? { weight: revision.weight } : {}),
  };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
