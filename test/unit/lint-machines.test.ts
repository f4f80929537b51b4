/**
 * machines/ is pure by lint, not by hope: biome.json lets a file under machines/ import only
 * `xstate` and `./` modules and use no wall clock or timer global (time comes from the provided
 * clock, machines/clock.ts). Each case lints a fixture under machines/ in a temporary copy of
 * the project's biome.json, so the real tree is never touched.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
const biome = join(root, 'node_modules', '.bin', 'biome');

interface Finding {
  file: string;
  rule: string;
  line: number;
}

const FIXTURES: Record<string, string[]> = {
  'machines/impure.ts': [
    "import { Pool } from 'pg';",
    "import { setup } from 'xstate';",
    'export const m = [Pool, setup];',
    'export const at = Date.now();',
  ],
  'machines/reaching-out.ts': [
    "import { errors } from '../src/domain/errors.ts';",
    "import { readFileSync } from 'node:fs';",
    "import { z } from 'zod';",
    'export const m = [errors, readFileSync, z];',
    'setTimeout(() => {}, 1);',
    'export const when = new Date();',
  ],
  'machines/clean.ts': [
    "import { setup } from 'xstate';",
    "import type { MachineClock } from './clock.ts';",
    'export const deadline = (clock: MachineClock) => clock.now() + 1_000;',
    'export const m = setup({}).createMachine({});',
  ],
  'src/impure.ts': ["import { Pool } from 'pg';", 'export const m = [Pool, Date.now()];'],
};

/** Biome's findings for `paths` (relative to `cwd`), one run. */
function lint(paths: string[], cwd: string): Finding[] {
  const run = spawnSync(biome, ['lint', '--reporter=json', ...paths], { cwd, encoding: 'utf8' });
  const report = JSON.parse(run.stdout) as {
    diagnostics: Array<{
      category: string;
      location?: { path?: string | { file?: string }; start?: { line: number } };
    }>;
  };
  return report.diagnostics.map((d) => {
    const p = d.location?.path;
    return {
      file: typeof p === 'string' ? p : (p?.file ?? ''),
      rule: d.category,
      line: d.location?.start?.line ?? 0,
    };
  });
}

let dir: string;
let found: Finding[];

beforeAll(() => {
  // A copy of the project's lint configuration with the fixtures laid out as in the project.
  dir = mkdtempSync(join(tmpdir(), 'flotilla-lint-'));
  cpSync(join(root, 'biome.json'), join(dir, 'biome.json'));
  mkdirSync(join(dir, 'machines'));
  mkdirSync(join(dir, 'src'));
  for (const [path, lines] of Object.entries(FIXTURES)) {
    writeFileSync(join(dir, path), `${lines.join('\n')}\n`);
  }
  found = lint(Object.keys(FIXTURES), dir);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** `line:rule` for each finding in `file`, sorted. */
const rules = (file: string) =>
  found
    .filter((f) => f.file.endsWith(file))
    .map((f) => `${f.line}:${f.rule}`)
    .sort();

describe('lint rule: machines/ is pure', () => {
  it('reports an import of pg and a Date.now() in machines/', () => {
    expect(rules('machines/impure.ts')).toEqual([
      '1:lint/style/noRestrictedImports',
      '4:lint/style/noRestrictedGlobals',
    ]);
  });

  it('reports imports from src/, node: builtins and other packages, and timer globals', () => {
    expect(rules('machines/reaching-out.ts')).toEqual([
      '1:lint/style/noRestrictedImports',
      '2:lint/style/noRestrictedImports',
      '3:lint/style/noRestrictedImports',
      '5:lint/style/noRestrictedGlobals',
      '6:lint/style/noRestrictedGlobals',
    ]);
  });

  it('accepts a machine that imports only xstate and ./ and reads time from its clock', () => {
    expect(rules('machines/clean.ts')).toEqual([]);
  });

  it('leaves the same code alone outside machines/', () => {
    expect(rules('src/impure.ts')).toEqual([]);
  });

  it('finds nothing in the machines of the repository', () => {
    expect(lint(['machines'], root)).toEqual([]);
  });
});
