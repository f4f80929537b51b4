/**
 * Issue 12 end to end, as processes: `flotilla serve` (replicas stopped at shutdown, no
 * --keep-replicas) driven through the CLI on this 2-core machine. A `cmd` deployment that
 * declares no resources runs 3 HEALTHY replicas; a crash-looping command reaches ERROR and
 * `deploy --wait` exits 1 within 60 s printing its output; two plain stop/starts of serve leave
 * RESTARTS at 0. (The capacity wait with `--capacity cpu=2` is covered through createFlotilla
 * in test/integration/flotilla/lifecycle.test.ts until serve has the flag.)
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, realpathSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeploymentView } from '../../src/index.ts';
import { createDatabase, services } from '../harness/isolation.ts';
import { freePort } from '../harness/services.ts';
import { waitFor } from '../harness/wait.ts';

const REPO = realpathSync(fileURLToPath(new URL('../../', import.meta.url)));
const dbName = `flotilla_life_${randomBytes(4).toString('hex')}`;
const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-life-e2e-'));
const models = mkdtempSync(join(tmpdir(), 'flotilla-life-models-'));
let databaseUrl = '';
let apiPort = 0;
let proxyPort = 0;
let server: ChildProcess | null = null;
let serverLog = '';

const HEALTH = `[health_check]
path = "/health"
interval_s = 0.5
timeout_s = 1
healthy_threshold = 1
unhealthy_threshold = 3
startup_timeout_s = 60
`;

function model(name: string, command: string): string {
  const dir = join(models, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'service-definition.toml'),
    `command = ${JSON.stringify(command)}\n${HEALTH}`,
  );
  return dir;
}

function startServe(): Promise<void> {
  const child = spawn(
    process.execPath,
    [
      'bin/flotilla.js',
      'serve',
      '--api-port',
      String(apiPort),
      '--proxy-port',
      String(proxyPort),
      '--data-dir',
      dataDir,
      '--model-root',
      models,
      '--health-interval',
      '1',
    ],
    {
      cwd: REPO,
      env: { ...process.env, DATABASE_URL: databaseUrl, FLOTILLA_API_TOKEN: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  server = child;
  let out = '';
  child.stderr!.on('data', (d) => {
    serverLog += d;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`serve did not listen:\n${serverLog}`)),
      60_000,
    );
    child.stdout!.on('data', (d) => {
      out += d;
      if (/^api \S+$/m.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code}:\n${out}\n${serverLog}`));
    });
  });
}

async function stopServe(): Promise<void> {
  const child = server;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 60_000))]);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    throw new Error(`serve did not exit within 60 s:\n${serverLog}`);
  }
  server = null;
}

function cli(args: string[], timeoutMs = 180_000) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
    execFile(
      process.execPath,
      ['bin/flotilla.js', ...args],
      {
        cwd: REPO,
        timeout: timeoutMs,
        env: {
          ...process.env,
          FLOTILLA_API_URL: `http://127.0.0.1:${apiPort}`,
          FLOTILLA_API_TOKEN: '',
        },
      },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') reject(err);
        else resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

async function status(name: string): Promise<DeploymentView> {
  const r = await cli(['status', name, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as DeploymentView;
}

beforeAll(async () => {
  databaseUrl = await createDatabase(dbName);
  apiPort = await freePort();
  proxyPort = await freePort();
  await startServe();
  await waitFor(async () => (await fetch(`http://127.0.0.1:${apiPort}/ready`)).status === 200, {
    timeoutMs: 30_000,
  });
}, 120_000);

afterAll(async () => {
  await cli(['rm', 'echo']).catch(() => {});
  await stopServe().catch(() => {});
  if (server && server.exitCode === null) server.kill('SIGKILL');
  const admin = new pg.Client({ connectionString: services().databaseUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.end();
}, 120_000);

describe('lifecycle an operator can trust (serve as a process)', () => {
  it('deploy of a cmd command with no resources and --replicas 3 reaches 3 HEALTHY on this machine', async () => {
    const dir = model('echo', `node ${join(REPO, 'bin/flotilla.js')} echo-server --port {port}`);
    const r = await cli(['deploy', dir, '--name', 'echo', '--replicas', '3', '--wait']);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const v = await status('echo');
    expect(v.healthy_replicas).toBe(3);
    expect(v.reason ?? '').not.toContain('crash loop');
  }, 120_000);

  it('a crash-looping command reaches ERROR and deploy --wait exits 1 within 60 s printing "boom"; logs --previous shows it', async () => {
    const dir = model('boom', "sh -c 'echo boom >&2; exit 3'");
    const t0 = Date.now();
    const r = await cli(['deploy', dir, '--name', 'boom', '--wait']);
    const seconds = (Date.now() - t0) / 1000;
    expect(r.code).toBe(1);
    expect(seconds).toBeLessThan(60);
    expect(r.stderr).toContain('boom');
    expect(r.stderr).toContain('exit code 3');
    expect((await status('boom')).state).toBe('ERROR');
    const logs = await cli(['logs', 'boom', '--previous']);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toContain('boom');
    const rm = await cli(['rm', 'boom', '--wait']);
    expect(rm.code, rm.stderr).toBe(0);
  }, 120_000);

  it('two plain stop/starts of serve leave RESTARTS at 0 and the same replicas HEALTHY', async () => {
    const before = await status('echo');
    for (let i = 0; i < 2; i++) {
      await stopServe();
      await startServe();
      await waitFor(
        async () => {
          const v = await status('echo').catch(() => null);
          return v && v.state === 'RUNNING' && v.healthy_replicas === 3 ? v : null;
        },
        { timeoutMs: 60_000, message: `echo with 3 HEALTHY after restart ${i + 1}` },
      );
    }
    const v = await status('echo');
    expect(v.replicas.map((r) => r.restarts)).toEqual([0, 0, 0]);
    expect(v.replicas.map((r) => r.id).sort()).toEqual(before.replicas.map((r) => r.id).sort());
    const ls = await cli(['status', 'echo']);
    expect(ls.stdout).not.toMatch(/recovery failed|session not found after coordinator restart/);
  }, 240_000);
});
