/**
 * Global setup of the integration and e2e projects: bin/flotilla.js runs the compiled
 * JavaScript in dist/, so tests that start `flotilla` (serve, echo-server replicas) must not
 * run a stale build. Builds with `tsc -p tsconfig.build.json` (incremental) when a source or
 * tsconfig is newer than the last build, or dist/ is missing.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { join, resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '../..');
const STAMP = join(REPO, 'dist/.tsbuildinfo');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

export default function setup() {
  const sources = Math.max(
    newestMtime(join(REPO, 'src')),
    newestMtime(join(REPO, 'machines')),
    statSync(join(REPO, 'tsconfig.json')).mtimeMs,
    statSync(join(REPO, 'tsconfig.build.json')).mtimeMs,
  );
  const entry = join(REPO, 'dist/src/cli/main.js');
  if (existsSync(entry) && existsSync(STAMP) && statSync(STAMP).mtimeMs >= sources) return;
  const started = Date.now();
  execFileSync(
    process.execPath,
    [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: REPO,
      stdio: 'inherit',
    },
  );
  const now = new Date();
  utimesSync(STAMP, now, now);
  console.log(`[build] dist/ rebuilt in ${Date.now() - started} ms`);
}
