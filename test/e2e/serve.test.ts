/**
 * `flotilla serve` as a process with real PostgreSQL (a fresh database), Redis and etcd, driven
 * through the CLI the way an operator drives it: deploy with --wait, status --json, scale up
 * and down, traffic through the proxy, a restart with --keep-replicas that adopts every
 * replica, and rm --wait leaving no replica process behind.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, realpathSync } from 'node:fs';
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
const dbName = `flotilla_e2e_${randomBytes(4).toString('hex')}`;
const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-serve-e2e-'));
let databaseUrl = '';
let apiPort = 0;
let proxyPort = 0;
let server: ChildProcess | null = null;
let serverLog = '';
/** Every replica port and pid this test saw, to check for leftovers and to clean up. */
const seenPorts = new Set<number>();
const seenPids = new Set<number>();

function startServe(): Promise<{ api: string; proxy: string }> {
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
      REPO,
      '--keep-replicas',
      '--health-interval',
      '1',
      '--redis-prefix',
      `e2e:${dbName}:`,
    ],
    {
      cwd: REPO,
      env: {
        ...process.env,
        DATABASE_URL: databaseUrl,
        REDIS_URL: services().redisUrl,
        ETCD_ENDPOINTS: services().etcdEndpoints,
        FLOTILLA_API_TOKEN: '',
      },
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
      () => reject(new Error(`serve did not print its listeners in 60 s:\n${out}\n${serverLog}`)),
      60_000,
    );
    child.stdout!.on('data', (d) => {
      out += d;
      const api = /^api (\S+)$/m.exec(out);
      const proxy = /^proxy (\S+)$/m.exec(out);
      if (api && proxy) {
        clearTimeout(timer);
        resolve({ api: api[1]!, proxy: proxy[1]! });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code} before listening:\n${out}\n${serverLog}`));
    });
  });
}

async function stopServe(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  const child = server;
  if (!child || child.exitCode !== null) return child?.exitCode ?? null;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill(signal);
  const code = await Promise.race([
    exited,
    new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 60_000)),
  ]);
  if (code === 'timeout') {
    child.kill('SIGKILL');
    throw new Error(`serve did not exit within 60 s of ${signal}:\n${serverLog}`);
  }
  server = null;
  return code;
}

function cli(
  args: string[],
  timeoutMs = 300_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
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

/** pid by port of the echo-server processes that serve this test's replicas. */
function echoPids(): Map<number, number> {
  const out = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  const pids = new Map<number, number>();
  for (const line of out.split('\n')) {
    const m = /^\s*(\d+)\s+.*echo-server --port (\d+)/.exec(line);
    if (m && seenPorts.has(Number(m[2]))) pids.set(Number(m[2]), Number(m[1]));
  }
  return pids;
}

function remember(v: DeploymentView): void {
  for (const r of v.replicas) {
    if (r.endpoint) seenPorts.add(Number(new URL(r.endpoint).port));
  }
  for (const pid of echoPids().values()) seenPids.add(pid);
}

beforeAll(async () => {
  databaseUrl = await createDatabase(dbName);
  apiPort = await freePort();
  proxyPort = await freePort();
});

afterAll(async () => {
  if (server && server.exitCode === null) server.kill('SIGKILL');
  for (const pid of seenPids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  const admin = new pg.Client({ connectionString: services().databaseUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.end();
});

describe('flotilla serve, driven through the CLI', () => {
  let proxyUrl = '';

  it('starts on the given ports and answers /health and /ready', async () => {
    const { api, proxy } = await startServe();
    expect(api).toBe(`http://127.0.0.1:${apiPort}`);
    expect(proxy).toBe(`http://127.0.0.1:${proxyPort}`);
    proxyUrl = proxy;
    expect((await fetch(`${api}/health`)).status).toBe(200);
    await waitFor(async () => (await fetch(`${api}/ready`)).status === 200, { timeoutMs: 30_000 });
  }, 120_000);

  it('deploy --wait brings examples/echo to RUNNING with two HEALTHY replicas', async () => {
    const t0 = performance.now();
    const r = await cli([
      'deploy',
      'examples/echo',
      '--name',
      'echo',
      '--replicas',
      '2',
      '--wait',
      '--timeout',
      '240',
    ]);
    console.log(`[e2e] deploy --wait took ${Math.round(performance.now() - t0)} ms:\n${r.stdout}`);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('echo is RUNNING: 2/2 replicas HEALTHY');
    const v = await status('echo');
    remember(v);
    expect(v.state).toBe('RUNNING');
    expect(v.replicas.filter((x) => x.state === 'HEALTHY')).toHaveLength(2);
    expect(v.routes.filter((x) => x.state === 'HEALTHY')).toHaveLength(2);
    const ls = await cli(['ls']);
    expect(ls.stdout).toMatch(/^NAME\s+STATE\s+READY\s+VARIANT\s+AGE$/m);
    expect(ls.stdout).toMatch(/^echo\s+RUNNING\s+2\/2\s+cmd\s+\d+[smhd]$/m);
  }, 300_000);

  it('scales to 3 and back to 1, each with --wait', async () => {
    const up = await cli(['scale', 'echo', '3', '--wait', '--timeout', '240']);
    expect(up.code, `${up.stdout}\n${up.stderr}`).toBe(0);
    const v3 = await status('echo');
    remember(v3);
    expect(v3.replicas.filter((x) => x.state === 'HEALTHY')).toHaveLength(3);
    expect(echoPids().size).toBe(3);

    const down = await cli(['scale', 'echo', '1', '--wait', '--timeout', '240']);
    expect(down.code, `${down.stdout}\n${down.stderr}`).toBe(0);
    const v1 = await status('echo');
    expect(v1.state).toBe('RUNNING');
    expect(v1.target_replicas).toBe(1);
    expect(v1.replicas.filter((x) => x.state !== 'TERMINATED')).toHaveLength(1);
    await waitFor(() => echoPids().size === 1, {
      timeoutMs: 30_000,
      message: 'scaled-down replicas left running',
    });
  }, 600_000);

  it('answers through the proxy port with x-flotilla-replica', async () => {
    const v = await status('echo');
    const live = v.replicas.find((x) => x.state === 'HEALTHY')!;
    const res = await waitFor(
      async () => {
        const r = await fetch(`${proxyUrl}/echo/v1/models`);
        return r.status === 200 ? r : null;
      },
      { timeoutMs: 30_000 },
    );
    expect(res.headers.get('x-flotilla-replica')).toBe(live.id);
  }, 60_000);

  it('a restart with --keep-replicas adopts every replica: same ids, same pids, no duplicates', async () => {
    const scaled = await cli(['scale', 'echo', '2', '--wait', '--timeout', '240']);
    expect(scaled.code, scaled.stderr).toBe(0);
    const before = await status('echo');
    remember(before);
    const pidsBefore = echoPids();
    expect(pidsBefore.size).toBe(2);

    expect(await stopServe('SIGTERM')).toBe(0);
    // Replicas outlive the stopped server.
    expect(echoPids()).toEqual(pidsBefore);
    const down = await cli(['ls']);
    expect(down.code).toBe(1);
    expect(down.stderr.trim()).toBe(
      `flotilla: no Flotilla API answers at http://127.0.0.1:${apiPort} (is \`flotilla serve\` running?)`,
    );

    const t0 = performance.now();
    await startServe();
    const after = await waitFor(
      async () => {
        const v = await status('echo');
        return v.state === 'RUNNING' && v.healthy_replicas === 2 ? v : null;
      },
      { timeoutMs: 120_000, message: 'echo not RUNNING with 2 HEALTHY replicas after restart' },
    );
    console.log(`[e2e] restart to RUNNING 2/2: ${Math.round(performance.now() - t0)} ms`);
    const live = (v: DeploymentView) =>
      v.replicas
        .filter((x) => x.state !== 'TERMINATED')
        .map((x) => `${x.id} ${x.endpoint}`)
        .sort();
    expect(live(after)).toEqual(live(before));
    expect(echoPids()).toEqual(pidsBefore);
    const ls = await cli(['ls', '--json']);
    expect((JSON.parse(ls.stdout) as DeploymentView[]).map((d) => d.name)).toEqual(['echo']);
  }, 600_000);

  it('rm --wait ends TERMINATED and leaves no echo replica process', async () => {
    const r = await cli(['rm', 'echo', '--wait', '--timeout', '240']);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('echo is TERMINATED');
    const v = await status('echo');
    expect(v.state).toBe('TERMINATED');
    await waitFor(() => echoPids().size === 0, {
      timeoutMs: 30_000,
      message: 'echo processes left',
    });
    const again = await cli(['scale', 'echo', '1']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('TERMINATED');
    expect(await stopServe('SIGTERM')).toBe(0);
  }, 300_000);
});
