/**
 * The CLI as an operator runs it, as processes: a closed pipe ends a command quietly, usage
 * mistakes are one line (exit 2), `validate --json` works, and `serve` takes every documented
 * knob (health knobs, --capacity, --backend) and reports its load on /health.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { stopChildren } from '../harness/child-processes.ts';

const REPO = realpathSync(fileURLToPath(new URL('../../', import.meta.url)));
const FIXTURES = 'test/fixtures/definitions';
const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-cli-e2e-'));
const children: ReturnType<typeof spawn>[] = [];
let fakeApi: Server | null = null;

afterEach(async () => {
  await stopChildren(children.splice(0));
  if (fakeApi) await new Promise<void>((r) => fakeApi!.close(() => r()));
  fakeApi = null;
});

afterAll(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { cwd: REPO, timeout: 90_000, env: { ...process.env, NO_COLOR: '1', ...env } },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') reject(err);
        else resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

const flotilla = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  run(process.execPath, ['bin/flotilla.js', ...args], env);

/** A stand-in API with one deployment and a long history (status output > a pipe's buffer). */
async function startFakeApi(): Promise<string> {
  const events = Array.from({ length: 1000 }, (_, i) => ({
    id: i + 1,
    deployment_id: 'd',
    actor_id: `replica:d-r${i}`,
    kind: 'replica',
    from_state: 'STARTING',
    to_state: 'HEALTHY',
    reason: `readiness passed ${'x'.repeat(150)}`,
    at: new Date().toISOString(),
  }));
  fakeApi = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/json');
    if (url.pathname === '/v1/deployments/d') {
      res.end(
        JSON.stringify({
          id: 'd',
          name: 'd',
          state: 'RUNNING',
          reason: null,
          runtime_variant: 'cmd',
          revision_id: 'rev',
          healthy_replicas: 1,
          target_replicas: 1,
          current_replicas: 1,
          min_replicas: 0,
          max_replicas: 10,
          routing: { strategy: 'round_robin', request_timeout_s: 60, retries: 2 },
          replicas: [],
          routes: [],
          created_at: new Date().toISOString(),
          deleted_at: null,
        }),
      );
      return;
    }
    if (url.pathname === '/v1/deployments/d/events') {
      res.end(JSON.stringify({ items: events, next: null }));
      return;
    }
    res.statusCode = 404;
    res.end('{"error":{"code":"not_found","message":"no","details":[]}}');
  });
  await new Promise<void>((r) => fakeApi!.listen(0, '127.0.0.1', () => r()));
  const addr = fakeApi.address();
  return `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}

describe('flotilla as a process', () => {
  it('`status NAME | head -1` prints one line and flotilla exits 0 without a stack trace', async () => {
    const api = await startFakeApi();
    const r = await run('bash', [
      '-c',
      `set -o pipefail; "${process.execPath}" bin/flotilla.js status d --events 1000 --api ${api} | head -1`,
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('name:      d  (id d)\n');
  });

  it('a reader that closes its end at once ends validate quietly (exit 0, nothing on stderr)', async () => {
    const child = spawn(
      process.execPath,
      [
        'bin/flotilla.js',
        'validate',
        `${FIXTURES}/documented-example`,
        '--variant',
        'vllm',
        '--set',
        'resource_slots.gpu=4',
        '--set',
        'model=org/model',
      ],
      { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(child);
    child.stdout!.destroy();
    let stderr = '';
    child.stderr!.on('data', (d) => {
      stderr += d;
    });
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });

  it('an unknown flag is one line on stderr naming the nearest flag, exit 2', async () => {
    const r = await flotilla(['deploy', 'examples/echo', '--nmae', 'echo']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'flotilla deploy: unknown option --nmae (did you mean --name?) (see `flotilla deploy --help`)\n',
    );
  });

  it('bare flotilla exits 2 with the usage on stderr', async () => {
    const r = await flotilla([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/usage: flotilla <command>/);
  });

  it('validate --json prints the revision, session and warnings; a problem is a JSON error on stderr', async () => {
    const ok = await flotilla(['validate', `${FIXTURES}/cmd-echo`, '--variant', 'cmd', '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(Object.keys(JSON.parse(ok.stdout)).sort()).toEqual(['revision', 'session', 'warnings']);
    const bad = await flotilla(['validate', `${FIXTURES}/cmd-echo`, '--json']);
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stderr)).toEqual({
      error: {
        code: 'usage',
        message: expect.stringMatching(/^--variant is required/),
        details: [{ path: 'validate', message: expect.stringMatching(/^--variant is required/) }],
      },
    });
  });

  it('serve takes the health knobs, --capacity and their env names, and /health reports the proxy load', async () => {
    const child = spawn(
      process.execPath,
      [
        'bin/flotilla.js',
        'serve',
        '--api-port',
        '0',
        '--proxy-port',
        '0',
        '--data-dir',
        dataDir,
        '--capacity',
        'cpu=2,mem=1g',
        '--max-health-staleness',
        '30',
      ],
      {
        cwd: REPO,
        env: {
          ...process.env,
          DATABASE_URL: '',
          REDIS_URL: '',
          ETCD_ENDPOINTS: '',
          FLOTILLA_API_TOKEN: '',
          ROUTE_HEALTH_TTL_SEC: '20',
          EVICTION_INTERVAL_SEC: '30',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.push(child);
    let out = '';
    let log = '';
    child.stderr!.on('data', (d) => {
      log += d;
    });
    const { api, proxy } = await new Promise<{ api: string; proxy: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve did not start:\n${log}`)), 90_000);
      child.stdout!.on('data', (d) => {
        out += d;
        const a = /^api (\S+)$/m.exec(out);
        const p = /^proxy (\S+)$/m.exec(out);
        if (a && p) {
          clearTimeout(timer);
          resolve({ api: a[1]!, proxy: p[1]! });
        }
      });
      child.once('exit', (code) => reject(new Error(`serve exited ${code}:\n${log}`)));
    });
    const starting = log
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg: string; config?: Record<string, unknown> })
      .find((l) => l.msg === 'starting');
    expect(starting?.config).toMatchObject({
      maxHealthStalenessS: 30,
      routeHealthTtlS: 20,
      evictionIntervalS: 30,
      capacity: { cpu: 2, mem: 1024 ** 3 },
    });
    const health = await fetch(`${api}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({
      status: 'ok',
      role: 'all',
      problems: [],
      load: { level: 'healthy', inflight: 0, queued: 0, serving: true },
    });
    const proxyHealth = (await (await fetch(`${proxy}/health`)).json()) as { load: unknown };
    expect(proxyHealth.load).toMatchObject({ level: 'healthy', inflight: 0, queued: 0 });
  });

  it('serve --backend docker with no Docker engine exits 1 saying so', async () => {
    const r = await flotilla(
      [
        'serve',
        '--backend',
        'docker',
        '--api-port',
        '0',
        '--proxy-port',
        '0',
        '--data-dir',
        dataDir,
      ],
      {
        DOCKER_HOST: `unix://${join(dataDir, 'no-docker.sock')}`,
        DATABASE_URL: '',
        REDIS_URL: '',
        ETCD_ENDPOINTS: '',
        FLOTILLA_API_TOKEN: '',
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/flotilla serve: cannot start: .*docker/i);
  });
});
