import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FlotillaError } from '../../src/domain/errors.ts';
import {
  generateRevision,
  MAX_DEFINITION_BYTES,
  type RevisionInput,
} from '../../src/revision/index.ts';

let base: string;
let root: string;
let outside: string;
const cmd = 'command = "serve {port}"\n';

beforeAll(() => {
  base = realpathSync(mkdtempSync(path.join(tmpdir(), 'flotilla-revision-')));
  root = path.join(base, 'models');
  outside = path.join(base, 'elsewhere');
  mkdirSync(path.join(root, 'good'), { recursive: true });
  mkdirSync(outside, { recursive: true });
  writeFileSync(path.join(root, 'good', 'service-definition.toml'), cmd);
  writeFileSync(path.join(outside, 'service-definition.toml'), cmd);
  symlinkSync(outside, path.join(root, 'link-out'));
  symlinkSync(path.join(root, 'good'), path.join(root, 'link-in'));
  mkdirSync(path.join(root, 'file-link-out'));
  symlinkSync(
    path.join(outside, 'service-definition.toml'),
    path.join(root, 'file-link-out', 'service-definition.toml'),
  );
  mkdirSync(path.join(root, 'huge'));
  // Valid TOML, one byte over the limit.
  const filler = `# ${'x'.repeat(MAX_DEFINITION_BYTES - cmd.length - 3)}\n`;
  writeFileSync(path.join(root, 'huge', 'service-definition.toml'), `${cmd}${filler}#`);
  mkdirSync(path.join(root, 'limit'));
  writeFileSync(path.join(root, 'limit', 'service-definition.toml'), `${cmd}${filler}`);
  writeFileSync(path.join(root, 'weights.bin'), 'not a folder');
});

afterAll(() => {
  rmSync(base, { recursive: true, force: true });
});

async function attempt(input: Partial<RevisionInput>, roots = [root]) {
  try {
    return await generateRevision(
      { runtime_variant: 'cmd', request: {}, ...input },
      { modelRoots: roots },
    );
  } catch (err) {
    if (err instanceof FlotillaError) return err;
    throw err;
  }
}

function refused(result: unknown): string[] {
  expect(result).toBeInstanceOf(FlotillaError);
  return (result as FlotillaError).details.map((d) => `${d.path}: ${d.message}`);
}

describe('model_path and the model roots', () => {
  it('accepts a folder inside a root, relative or absolute', async () => {
    for (const p of ['good', path.join(root, 'good')]) {
      const result = await attempt({ model_path: p });
      expect(result).not.toBeInstanceOf(FlotillaError);
      expect((result as { revision: { model_path?: string } }).revision.model_path).toBe(
        path.join(root, 'good'),
      );
    }
  });

  it('refuses ../ out of the root without looking at the file system', async () => {
    expect(refused(await attempt({ model_path: '../elsewhere' }))).toEqual([
      'model_path: "../elsewhere" is outside the allowed model roots',
    ]);
    expect(refused(await attempt({ model_path: 'good/../../elsewhere' }))).toEqual([
      'model_path: "good/../../elsewhere" is outside the allowed model roots',
    ]);
  });

  it('refuses an absolute path elsewhere', async () => {
    expect(refused(await attempt({ model_path: outside }))).toEqual([
      `model_path: ${JSON.stringify(outside)} is outside the allowed model roots`,
    ]);
    expect(refused(await attempt({ model_path: '/etc' }))).toEqual([
      'model_path: "/etc" is outside the allowed model roots',
    ]);
  });

  it('refuses a symlinked folder that leads out of the roots', async () => {
    expect(refused(await attempt({ model_path: 'link-out' }))).toEqual([
      'model_path: "link-out" resolves outside the allowed model roots (through a symlink)',
    ]);
  });

  it('refuses a definition file that is a symlink out of the roots', async () => {
    expect(refused(await attempt({ model_path: 'file-link-out' }))).toEqual([
      'service-definition.toml: is a symlink to a file outside the allowed model roots; refused',
    ]);
  });

  it('follows a symlink that stays inside and records the real path', async () => {
    const result = await attempt({ model_path: 'link-in' });
    expect((result as { revision: { model_path?: string } }).revision.model_path).toBe(
      path.join(root, 'good'),
    );
  });

  it('accepts a path inside any of several roots', async () => {
    const result = await attempt({ model_path: 'service-definition.toml' }, [root, outside]);
    expect((result as { revision: { model_path?: string } }).revision.model_path).toBe(outside);
  });

  it('says when the path does not exist or is not a folder or .toml file', async () => {
    expect(refused(await attempt({ model_path: 'nope' }))).toEqual([
      'model_path: "nope" does not exist',
    ]);
    expect(refused(await attempt({ model_path: 'weights.bin' }))).toEqual([
      'model_path: "weights.bin" is neither a model folder nor a .toml file',
    ]);
  });

  it('says when no configured root exists', async () => {
    expect(refused(await attempt({ model_path: 'good' }, [path.join(base, 'missing')]))).toEqual([
      'model_path: none of the configured model roots exists',
    ]);
  });
});

describe('the 1 MiB limit on a definition', () => {
  it('accepts a file of exactly 1 MiB', async () => {
    const result = await attempt({ model_path: 'limit' });
    expect(result).not.toBeInstanceOf(FlotillaError);
  });

  it('refuses a file over 1 MiB', async () => {
    expect(refused(await attempt({ model_path: 'huge' }))).toEqual([
      `service-definition.toml: is ${MAX_DEFINITION_BYTES + 1} bytes; a service definition may be at most 1 MiB (${MAX_DEFINITION_BYTES} bytes)`,
    ]);
  });

  it('refuses inline text over 1 MiB', async () => {
    const text = `${cmd}#${'x'.repeat(MAX_DEFINITION_BYTES)}`;
    expect(refused(await attempt({ service_definition: text }))).toEqual([
      `service definition: is ${Buffer.byteLength(text)} bytes; a service definition may be at most 1 MiB (${MAX_DEFINITION_BYTES} bytes)`,
    ]);
  });
});
