/**
 * Finding and reading service-definition.toml: the model folder must resolve (symlinks
 * followed) inside a configured model root, the file too, and the file may not exceed 1 MiB.
 */
import { open, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import TOML from '@iarna/toml';
import type { ErrorDetail } from '../domain/errors.ts';

export const DEFINITION_FILE = 'service-definition.toml';
export const MAX_DEFINITION_BYTES = 1024 * 1024;

type Result<T> = { ok: true; value: T } | { ok: false; details: ErrorDetail[] };

function fail<T>(pathLabel: string, message: string): Result<T> {
  return { ok: false, details: [{ path: pathLabel, message }] };
}

function isInside(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate);
  return rel === '' || (!rel.startsWith(`..${path.sep}`) && rel !== '..' && !path.isAbsolute(rel));
}

async function realRoots(roots: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const r of roots) {
    try {
      out.push(await realpath(path.resolve(r)));
    } catch {
      // A root that does not exist holds nothing; the others still count.
    }
  }
  return out;
}

export interface ModelLocation {
  /** Real path of the model folder. */
  folder: string;
  /** The definition file to read (may not exist when the folder was given). */
  definitionFile: string;
  /** True when model_path named the .toml file itself. */
  explicitFile: boolean;
  roots: string[];
}

/**
 * Resolves `model_path` (a model folder, or a .toml file whose folder is the model folder).
 * A relative path is taken relative to each model root in turn. The path is refused when it
 * leaves every root, lexically (`../`) or through a symlink. Messages never reveal real paths.
 */
export async function resolveModelPath(
  modelPath: string,
  roots: readonly string[],
): Promise<Result<ModelLocation>> {
  const label = 'model_path';
  if (modelPath.trim() === '' || modelPath.includes('\0'))
    return fail(label, 'expected a non-empty path');
  const real = await realRoots(roots);
  if (real.length === 0) return fail(label, 'none of the configured model roots exists');
  const candidates = path.isAbsolute(modelPath)
    ? [path.resolve(modelPath)]
    : real.map((r) => path.resolve(r, modelPath));
  // Checked before touching the file system, so `../` probes learn nothing about what exists.
  const givenRoots = [...real, ...roots.map((r) => path.resolve(r))];
  if (!candidates.some((c) => givenRoots.some((r) => isInside(r, c)))) {
    return fail(label, `${JSON.stringify(modelPath)} is outside the allowed model roots`);
  }
  for (const candidate of candidates) {
    let resolved: string;
    try {
      resolved = await realpath(candidate);
    } catch {
      continue;
    }
    if (!real.some((r) => isInside(r, resolved))) {
      return fail(
        label,
        `${JSON.stringify(modelPath)} resolves outside the allowed model roots (through a symlink)`,
      );
    }
    const st = await stat(resolved);
    if (st.isDirectory()) {
      return {
        ok: true,
        value: {
          folder: resolved,
          definitionFile: path.join(resolved, DEFINITION_FILE),
          explicitFile: false,
          roots: real,
        },
      };
    }
    if (st.isFile() && resolved.endsWith('.toml')) {
      return {
        ok: true,
        value: {
          folder: path.dirname(resolved),
          definitionFile: resolved,
          explicitFile: true,
          roots: real,
        },
      };
    }
    return fail(label, `${JSON.stringify(modelPath)} is neither a model folder nor a .toml file`);
  }
  return fail(label, `${JSON.stringify(modelPath)} does not exist`);
}

/**
 * Reads the definition file of a resolved location. Returns `undefined` when a folder has no
 * definition file (it is optional). The file itself must resolve inside a root too.
 */
export async function readDefinitionFile(loc: ModelLocation): Promise<Result<string | undefined>> {
  const label = path.basename(loc.definitionFile);
  let resolved: string;
  try {
    resolved = await realpath(loc.definitionFile);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !loc.explicitFile)
      return { ok: true, value: undefined };
    return fail(label, `cannot read: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  if (!loc.roots.some((r) => isInside(r, resolved))) {
    return fail(label, 'is a symlink to a file outside the allowed model roots; refused');
  }
  const handle = await open(resolved, 'r').catch((err: NodeJS.ErrnoException) => err);
  if (!('read' in handle)) return fail(label, `cannot read: ${handle.code ?? 'error'}`);
  try {
    const st = await handle.stat();
    if (!st.isFile()) return fail(label, 'is not a regular file');
    if (st.size > MAX_DEFINITION_BYTES) {
      return fail(
        label,
        `is ${st.size} bytes; a service definition may be at most 1 MiB (${MAX_DEFINITION_BYTES} bytes)`,
      );
    }
    // Read at most one byte past the limit: the file may grow between stat and read.
    const buf = Buffer.alloc(MAX_DEFINITION_BYTES + 1);
    let length = 0;
    while (length < buf.length) {
      const { bytesRead } = await handle.read(buf, length, buf.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > MAX_DEFINITION_BYTES) {
      return fail(label, `is larger than 1 MiB (${MAX_DEFINITION_BYTES} bytes); refused`);
    }
    return decodeDefinition(buf.subarray(0, length), label);
  } finally {
    await handle.close();
  }
}

function decodeDefinition(bytes: Uint8Array, label: string): Result<string> {
  try {
    return { ok: true, value: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
  } catch {
    return fail(label, 'is not valid UTF-8 text');
  }
}

/** Checks the size of a definition given inline as text. */
export function checkInlineDefinition(text: string, label: string): Result<string> {
  const size = Buffer.byteLength(text, 'utf8');
  if (size > MAX_DEFINITION_BYTES) {
    return fail(
      label,
      `is ${size} bytes; a service definition may be at most 1 MiB (${MAX_DEFINITION_BYTES} bytes)`,
    );
  }
  return { ok: true, value: text };
}

/** Parses TOML text; a syntax error names `file:line:column` and what the parser expected. */
export function parseDefinitionToml(text: string, label: string): Result<Record<string, unknown>> {
  try {
    return { ok: true, value: TOML.parse(text) as Record<string, unknown> };
  } catch (err) {
    const e = err as { line?: number; col?: number; message?: string };
    const line = typeof e.line === 'number' ? e.line + 1 : undefined;
    const col = typeof e.col === 'number' ? e.col + 1 : undefined;
    const where = line !== undefined ? `${label}:${line}:${col ?? 1}` : label;
    const first = String(e.message ?? err)
      .split(/ at row \d+/)[0]!
      .split('\n')[0]!
      .trim();
    return fail(where, `TOML syntax error: ${first}`);
  }
}
