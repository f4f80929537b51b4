/**
 * Flotilla as a library: `npm pack` the repository (dist/ is built by the e2e global setup,
 * test/harness/build-dist.ts), install the tarball into a scratch project in a temp dir from the
 * npm cache, then compile a small TypeScript file that imports `createFlotilla` from 'flotilla'
 * (types from the package's `exports`) and run it: an embedded data dir, nothing deployed,
 * `list()` is [], `close()`.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = realpathSync(fileURLToPath(new URL('../../', import.meta.url)));
const TSC = join(REPO, 'node_modules/typescript/bin/tsc');
const run = promisify(execFile);

let scratch = '';
let packed: { filename: string; files: { path: string }[] };

/** npm with the output kept for the failure message. */
async function npm(args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await run('npm', args, { cwd, maxBuffer: 64 * 2 ** 20 });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`npm ${args.join(' ')} failed: ${e.message}\n${e.stdout}\n${e.stderr}`);
  }
}

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'flotilla-package-'));
  // dist/ is already fresh (global setup), so the `prepare` build is not run a second time.
  const out = await npm(
    ['pack', '--json', '--ignore-scripts', '--pack-destination', scratch],
    REPO,
  );
  packed = JSON.parse(out)[0];
}, 120_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('the flotilla package', () => {
  it('packs the compiled JavaScript, its type declarations and the bin, not the build cache or tests', () => {
    const paths = packed.files.map((f) => f.path);
    for (const p of [
      'package.json',
      'bin/flotilla.js',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/cli/main.js',
      'dist/machines/deployment.js',
      'examples/echo/service-definition.toml',
    ]) {
      expect(paths).toContain(p);
    }
    expect(paths.filter((p) => p.startsWith('test/') || p.startsWith('bench/'))).toEqual([]);
    expect(paths).not.toContain('dist/.tsbuildinfo');
  });

  it('installs into another project, where createFlotilla from "flotilla" type-checks and runs: list() is [] and close() ends it', async () => {
    const project = join(scratch, 'consumer');
    mkdirSync(join(project, 'src'), { recursive: true });
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2),
    );
    // Dependencies come from the npm cache that `npm ci` filled; the registry only if missing.
    await npm(
      [
        'install',
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
        '--ignore-scripts',
        join(scratch, packed.filename),
        '@types/node@20',
      ],
      project,
    );
    const installed = JSON.parse(
      readFileSync(join(project, 'node_modules/flotilla/package.json'), 'utf8'),
    );
    expect(installed.exports['.']).toEqual({
      types: './dist/src/index.d.ts',
      default: './dist/src/index.js',
    });

    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2023',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          types: ['node'],
          rootDir: 'src',
          outDir: 'out',
          noEmitOnError: true,
        },
        include: ['src'],
      }),
    );
    writeFileSync(
      join(project, 'src/main.ts'),
      `import { createFlotilla, type DeploymentView, type Flotilla } from 'flotilla';

const dataDir = process.argv[2];
if (!dataDir) throw new Error('usage: main.js <dataDir>');
const flotilla: Flotilla = await createFlotilla({ dataDir, proxy: false, prober: false });
const list: DeploymentView[] = await flotilla.list();
const names: string[] = list.map((d) => d.name);
await flotilla.close();
console.log(JSON.stringify({ names }));
`,
    );
    // The types are real (not any): a wrong option is an error the compiler must report.
    writeFileSync(
      join(project, 'src/wrong.ts'),
      `import { createFlotilla } from 'flotilla';

export async function wrong(): Promise<void> {
  // @ts-expect-error dataDir is a string
  await createFlotilla({ dataDir: 42 });
}
`,
    );
    // One compile: type-checks both files (any error fails it, noEmitOnError) and emits out/.
    const compiled = await run(process.execPath, [TSC, '-p', 'tsconfig.json'], {
      cwd: project,
    }).then(
      ({ stdout, stderr }) => ({ code: 0, output: stdout + stderr }),
      (err) => ({ code: err.code as number, output: `${err.stdout}${err.stderr}` }),
    );
    expect(compiled).toEqual({ code: 0, output: '' });

    const dataDir = join(scratch, 'data');
    const { stdout } = await run(process.execPath, ['out/main.js', dataDir], {
      cwd: project,
      timeout: 240_000,
    });
    expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toEqual({ names: [] });
  }, 480_000);
});
