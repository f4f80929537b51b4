/**
 * Real PostgreSQL, Redis and etcd for integration and end-to-end tests.
 *
 * Each service is obtained, in this order:
 *   1. from the environment (FLOTILLA_TEST_DATABASE_URL, FLOTILLA_TEST_REDIS_URL,
 *      FLOTILLA_TEST_ETCD_ENDPOINTS);
 *   2. from testcontainers, when a Docker engine answers;
 *   3. as an ephemeral instance spawned from local binaries in a temp dir on a free port.
 * If none works the run fails with one line naming what is missing and how to install it.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ServiceUrls {
  databaseUrl: string;
  redisUrl: string;
  etcdEndpoints: string;
  /** How each one was obtained, for the log line. */
  sources: Record<'postgres' | 'redis' | 'etcd', string>;
}

interface Running {
  url: string;
  source: string;
  stop: () => Promise<void>;
}

export class MissingServiceError extends Error {}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, child: ChildProcess, name: string, deadlineMs = 30_000) {
  const until = Date.now() + deadlineMs;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`${name} exited with code ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = new Socket();
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
      s.connect(port, '127.0.0.1');
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${name} did not listen on ${port} within ${deadlineMs} ms`);
}

function which(bin: string, extraDirs: string[] = []): string | undefined {
  for (const dir of [...extraDirs, ...(process.env.PATH ?? '').split(':')]) {
    const p = join(dir, bin);
    if (dir && existsSync(p)) return p;
  }
  return undefined;
}

function postgresBinDirs(): string[] {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return [];
  try {
    return execFileSync('ls', ['-1r', root], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map((v) => join(root, v, 'bin'));
  } catch {
    return [];
  }
}

/** Every process the harness spawned, pid -> name: the end-of-run check looks for survivors. */
const spawnedProcesses = new Map<number, string>();

function track(pid: number | undefined, name: string): void {
  if (pid) spawnedProcesses.set(pid, name);
}

/** Whether `pid` runs (a zombie waiting for its parent to reap it does not). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to someone we may not signal.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    // No /proc (not Linux) or it went away between the two checks: trust kill(0).
    return existsSync(`/proc/${pid}`) || !existsSync('/proc');
  }
}

async function waitForExit(pid: number, deadlineMs: number): Promise<boolean> {
  const until = Date.now() + deadlineMs;
  while (isAlive(pid)) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/** The harness's processes still alive, as `name (pid N)`; forgets those that ended. */
export function harnessProcessesAlive(): string[] {
  const alive: string[] = [];
  for (const [pid, name] of spawnedProcesses) {
    if (isAlive(pid)) alive.push(`${name} (pid ${pid})`);
    else spawnedProcesses.delete(pid);
  }
  return alive;
}

/** SIGKILLs every harness process still alive (after the check named them). */
export function killHarnessProcesses(): void {
  for (const pid of spawnedProcesses.keys()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** The postmaster's pid: the first line of `postmaster.pid` in its data directory. */
function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Stops PostgreSQL and waits until it is gone. As root `child` is `runuser`, which ignores
 * SIGINT, so the fast-shutdown SIGINT goes to the postmaster itself (pid from postmaster.pid);
 * `runuser` then exits with it. SIGKILL after 10 s.
 */
async function stopPostgres(child: ChildProcess, pid: number | undefined): Promise<void> {
  if (pid !== undefined && isAlive(pid)) {
    try {
      process.kill(pid, 'SIGINT');
    } catch {
      // Gone already.
    }
    if (!(await waitForExit(pid, 10_000))) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone between the check and the kill.
      }
      await waitForExit(pid, 5_000);
    }
  }
  // runuser forwards SIGTERM to its child (unlike SIGINT); without a postmaster pid this stops it.
  await stopChild(child, 'SIGTERM');
}

function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}

async function dockerAnswers(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await Promise.race([
      getContainerRuntimeClient(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 5_000)),
    ]);
    return true;
  } catch {
    return false;
  }
}

async function spawnPostgres(): Promise<Running> {
  const dirs = postgresBinDirs();
  const initdb = which('initdb', dirs);
  const postgres = which('postgres', dirs);
  if (!initdb || !postgres) {
    throw new MissingServiceError(
      'PostgreSQL: no FLOTILLA_TEST_DATABASE_URL, no Docker engine, and no initdb/postgres binaries; install with `apt-get install -y postgresql`',
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-pg-'));
  chmodSync(dir, 0o777);
  const data = join(dir, 'data');
  const port = await freePort();
  // PostgreSQL refuses to run as root; run it as the postgres user when we are root.
  const asUser = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
  const run = (cmd: string, args: string[]) => {
    const full = [...asUser, cmd, ...args];
    return { bin: full[0] as string, args: full.slice(1) };
  };
  const init = run(initdb, [
    '-D',
    data,
    '-U',
    'postgres',
    '--auth=trust',
    '-E',
    'UTF8',
    '--no-sync',
  ]);
  execFileSync(init.bin, init.args, { stdio: 'ignore' });
  const srv = run(postgres, [
    '-D',
    data,
    '-p',
    String(port),
    '-k',
    dir,
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    'fsync=off',
    '-c',
    'synchronous_commit=off',
    '-c',
    'full_page_writes=off',
    '-c',
    'max_connections=300',
  ]);
  const child = spawn(srv.bin, srv.args, { stdio: 'ignore' });
  track(child.pid, asUser.length > 0 ? 'runuser (postgres)' : 'postgres');
  await waitForPort(port, child, 'postgres');
  // The port answers before the server accepts queries; pg_isready waits for that.
  const isready = which('pg_isready', dirs);
  if (isready) {
    const until = Date.now() + 20_000;
    for (;;) {
      try {
        execFileSync(isready, ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres'], {
          stdio: 'ignore',
        });
        break;
      } catch (e) {
        if (Date.now() > until) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  const pid = postmasterPid(data);
  track(pid, `postgres server on :${port}`);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    source: `ephemeral ${postgres} on :${port}`,
    stop: async () => {
      await stopPostgres(child, pid);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function spawnRedis(): Promise<Running> {
  const bin = which('redis-server');
  if (!bin) {
    throw new MissingServiceError(
      'Redis: no FLOTILLA_TEST_REDIS_URL, no Docker engine, and no redis-server binary; install with `apt-get install -y redis-server`',
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-redis-'));
  const port = await freePort();
  const child = spawn(
    bin,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
    ],
    { stdio: 'ignore' },
  );
  track(child.pid, `redis-server on :${port}`);
  await waitForPort(port, child, 'redis-server');
  return {
    url: `redis://127.0.0.1:${port}`,
    source: `ephemeral ${bin} on :${port}`,
    stop: async () => {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function spawnEtcd(): Promise<Running> {
  const bin = which('etcd');
  if (!bin) {
    throw new MissingServiceError(
      'etcd: no FLOTILLA_TEST_ETCD_ENDPOINTS, no Docker engine, and no etcd binary; install with `apt-get install -y etcd-server`',
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-etcd-'));
  const client = await freePort();
  const peer = await freePort();
  const child = spawn(
    bin,
    [
      '--data-dir',
      join(dir, 'data'),
      '--listen-client-urls',
      `http://127.0.0.1:${client}`,
      '--advertise-client-urls',
      `http://127.0.0.1:${client}`,
      '--listen-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-cluster',
      `default=http://127.0.0.1:${peer}`,
      '--unsafe-no-fsync',
    ],
    { stdio: 'ignore' },
  );
  track(child.pid, `etcd on :${client}`);
  await waitForPort(client, child, 'etcd');
  return {
    url: `http://127.0.0.1:${client}`,
    source: `ephemeral ${bin} on :${client}`,
    stop: async () => {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function fromContainers(): Promise<{ pg: Running; redis: Running; etcd: Running }> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const pgC = await new GenericContainer('postgres:16-alpine')
    .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust' })
    .withExposedPorts(5432)
    .withWaitStrategy(Wait.forLogMessage(/ready to accept connections/, 2))
    .start();
  const redisC = await new GenericContainer('redis:7-alpine').withExposedPorts(6379).start();
  const etcdC = await new GenericContainer('quay.io/coreos/etcd:v3.5.17')
    .withCommand([
      'etcd',
      '--listen-client-urls',
      'http://0.0.0.0:2379',
      '--advertise-client-urls',
      'http://0.0.0.0:2379',
    ])
    .withExposedPorts(2379)
    .start();
  const wrap = (url: string, c: { stop: () => Promise<unknown> }): Running => ({
    url,
    source: 'testcontainers',
    stop: async () => {
      await c.stop();
    },
  });
  return {
    pg: wrap(`postgres://postgres@${pgC.getHost()}:${pgC.getMappedPort(5432)}/postgres`, pgC),
    redis: wrap(`redis://${redisC.getHost()}:${redisC.getMappedPort(6379)}`, redisC),
    etcd: wrap(`http://${etcdC.getHost()}:${etcdC.getMappedPort(2379)}`, etcdC),
  };
}

/** Starts (or finds) every service; returns their URLs and one function that stops what was started. */
export async function startServices(
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ urls: ServiceUrls; stop: () => Promise<void> }> {
  const started: Running[] = [];
  const given = (url: string | undefined): Running | undefined =>
    url ? { url, source: 'environment', stop: async () => {} } : undefined;

  let pg = given(env.FLOTILLA_TEST_DATABASE_URL);
  let redis = given(env.FLOTILLA_TEST_REDIS_URL);
  let etcd = given(env.FLOTILLA_TEST_ETCD_ENDPOINTS);

  try {
    if ((!pg || !redis || !etcd) && (await dockerAnswers())) {
      const c = await fromContainers();
      started.push(c.pg, c.redis, c.etcd);
      pg ??= c.pg;
      redis ??= c.redis;
      etcd ??= c.etcd;
    }
    const spawned = await Promise.allSettled([
      pg ? Promise.resolve(pg) : spawnPostgres(),
      redis ? Promise.resolve(redis) : spawnRedis(),
      etcd ? Promise.resolve(etcd) : spawnEtcd(),
    ]);
    const failures: string[] = [];
    const got: Running[] = [];
    for (const r of spawned) {
      if (r.status === 'fulfilled') {
        got.push(r.value);
        if (r.value.source.startsWith('ephemeral')) started.push(r.value);
      } else failures.push(r.reason instanceof Error ? r.reason.message : String(r.reason));
    }
    if (failures.length) throw new MissingServiceError(failures.join('\n'));
    const [p, r, e] = got as [Running, Running, Running];
    return {
      urls: {
        databaseUrl: p.url,
        redisUrl: r.url,
        etcdEndpoints: e.url,
        sources: { postgres: p.source, redis: r.source, etcd: e.source },
      },
      stop: async () => {
        await Promise.all(started.map((s) => s.stop()));
      },
    };
  } catch (err) {
    await Promise.all(started.map((s) => s.stop().catch(() => {})));
    throw err;
  }
}
