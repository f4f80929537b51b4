/**
 * A Docker image of the echo model server, built locally (no registry needed): a root file
 * system holding this machine's `node` binary with the shared libraries `ldd` names, and the
 * `flotilla echo-server` command bundled into one file, loaded with `docker import`.
 *
 * Inside the image: `node /app/echo-server.mjs [echo-server flags]` runs the same code as
 * `flotilla echo-server` (same flags and environment: PORT, HOST, ECHO_*). Containers must listen
 * on 0.0.0.0 (`--host 0.0.0.0`) for a published port to reach them.
 *
 * The tag carries a hash of what went in, so an image is built once per change and reused by
 * every test file and run after that. Run it by hand: `npx tsx test/harness/docker-image.ts`.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The image's repository; the tag is a content hash. */
export const ECHO_IMAGE_REPOSITORY = 'flotilla-test/echo';

/** The echo server's entry inside the image. */
export const ECHO_ENTRY = '/app/echo-server.mjs';

/** argv of the echo server in a container listening on `{port}` on every interface. */
export function echoContainerCommand(extra: string[] = []): string[] {
  return ['node', ECHO_ENTRY, '--port', '{port}', '--host', '0.0.0.0', ...extra];
}

let bundled: Promise<string> | undefined;

/** The echo server CLI bundled into one ES module (node built-ins only). */
function bundleEchoServer(): Promise<string> {
  bundled ??= buildBundle();
  return bundled;
}

/**
 * The bundle written to a file named by its hash under the temp dir, for replicas run as plain
 * processes: `node <file> --port {port}` starts in a fraction of the time tsx takes.
 */
export async function echoBundleFile(): Promise<string> {
  const bundle = await bundleEchoServer();
  const hash = createHash('sha256').update(bundle).digest('hex').slice(0, 16);
  const file = path.join(os.tmpdir(), `flotilla-echo-server-${hash}.mjs`);
  if (!existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, bundle);
    renameSync(tmp, file);
  }
  return file;
}

async function buildBundle(): Promise<string> {
  const result = await build({
    stdin: {
      contents: [
        "import { run } from './src/cli/commands/echo-server.ts';",
        'process.exitCode = await run(process.argv.slice(2));',
      ].join('\n'),
      resolveDir: REPO_ROOT,
      loader: 'ts',
      sourcefile: 'echo-server-entry.ts',
    },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    write: false,
    logLevel: 'silent',
  });
  const out = result.outputFiles[0];
  if (!out) throw new Error('esbuild produced no output for the echo server');
  return out.text;
}

/** The shared libraries `ldd` lists for `binary` (absolute paths, the loader included). */
function sharedLibraries(binary: string): string[] {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1]) libs.push(m[1]);
  }
  return libs;
}

function imageExists(tag: string): boolean {
  try {
    execFileSync('docker', ['image', 'inspect', tag], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function copyInto(root: string, file: string, target = file): void {
  const dest = path.join(root, target);
  mkdirSync(path.dirname(dest), { recursive: true });
  copyFileSync(file, dest); // follows symlinks: the image gets the real file under the link's name
  chmodSync(dest, 0o755);
}

/** Serializes builds across test files (vitest workers) with a lock directory. */
async function withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const lock = path.join(os.tmpdir(), `${name}.lock`);
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`${lock} held for 3 minutes; remove it if stale`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

let built: Promise<string> | undefined;

/**
 * Builds the echo image unless an image with the same content hash exists; returns its tag.
 * Needs the `docker` CLI and a running engine.
 */
export function echoImage(): Promise<string> {
  built ??= buildEchoImage();
  return built;
}

async function buildEchoImage(): Promise<string> {
  const nodeBinary = realpathSync(process.execPath);
  const libs = sharedLibraries(nodeBinary);
  const bundle = await bundleEchoServer();
  const hash = createHash('sha256')
    .update(bundle)
    .update(`${nodeBinary} ${process.version} ${libs.join(' ')}`)
    .digest('hex')
    .slice(0, 16);
  const tag = `${ECHO_IMAGE_REPOSITORY}:${hash}`;
  if (imageExists(tag)) return tag;
  return withLock('flotilla-echo-image', async () => {
    if (imageExists(tag)) return tag;
    const started = Date.now();
    const staging = mkdtempSync(path.join(os.tmpdir(), 'flotilla-echo-image-'));
    try {
      const root = path.join(staging, 'rootfs');
      copyInto(root, nodeBinary, '/usr/bin/node');
      for (const lib of libs) copyInto(root, lib);
      mkdirSync(path.join(root, 'app'), { recursive: true });
      writeFileSync(path.join(root, ECHO_ENTRY), bundle);
      mkdirSync(path.join(root, 'tmp'));
      chmodSync(path.join(root, 'tmp'), 0o1777);
      mkdirSync(path.join(root, 'etc'));
      writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0::/:/bin/false\n');
      const tarball = path.join(staging, 'rootfs.tar');
      execFileSync('tar', ['-C', root, '-cf', tarball, '.']);
      execFileSync(
        'docker',
        [
          'import',
          '--change',
          'ENV PATH=/usr/bin:/bin',
          '--change',
          'WORKDIR /app',
          '--message',
          'flotilla echo server for tests (test/harness/docker-image.ts)',
          tarball,
          tag,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      console.log(`[docker-image] built ${tag} in ${Date.now() - started} ms`);
      return tag;
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  });
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(await echoImage());
}
