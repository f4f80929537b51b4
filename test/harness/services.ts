/**
 * Real PostgreSQL, Redis and etcd for integration and end-to-end tests.
 *
 * Each service is obtained, in this order:
 *   1. from the environment (FLOTILLA_TEST_DATABASE_URL, FLOTILLA_TEST_REDIS_URL,
 *      FLOTILLA_TEST_ETCD_ENDPOINTS);
 *   2. as an ephemeral instance spawned from local binaries in a temp dir on a free port;
 *   3. from testcontainers, when a Docker engine answers and already holds the service's image.
 * Local binaries come first and images are never pulled: a Docker engine with no registry
 * behind it (CI here) must not cost a pull attempt per run.
 * If none works the run fails with one line naming what is missing and how to install it.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
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

/** A server spawned here that can be stopped and started again (the fault suite's outages). */
export interface Restartable extends Running {
  port: number;
  /** Stops the server and keeps its data: `resume` starts it again on the same port. */
  halt: () => Promise<void>;
  resume: () => Promise<void>;
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
export function isAlive(pid: number): boolean {
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

/** Waits until `pid` is gone; false if it still runs after `deadlineMs`. */
export async function waitForExit(pid: number, deadlineMs: number): Promise<boolean> {
  const until = Date.now() + deadlineMs;
  while (isAlive(pid)) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 25));
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

const IMAGES = {
  postgres: 'postgres:16-alpine',
  redis: 'redis:7-alpine',
  etcd: 'quay.io/coreos/etcd:v3.5.17',
} as const;
type Service = keyof typeof IMAGES;

/** Whether a Docker engine answers (within 5 s) and holds `image` already; nothing is pulled. */
async function imagePresent(image: string): Promise<boolean> {
  try {
    const { default: Dockerode } = await import('dockerode');
    const docker = new Dockerode();
    await Promise.race([
      docker.getImage(image).inspect(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 5_000)),
    ]);
    return true;
  } catch {
    return false;
  }
}

/** Local binaries for each service, checked without starting anything. */
function haveBinaries(service: Service): boolean {
  if (service === 'postgres') {
    const dirs = postgresBinDirs();
    return Boolean(which('initdb', dirs) && which('postgres', dirs));
  }
  return Boolean(which(service === 'redis' ? 'redis-server' : 'etcd'));
}

/**
 * An ephemeral PostgreSQL. With `log`, the server's output goes to `logFile` (each line prefixed
 * with the time in ms and the application name; one line per statement with `logStatements`).
 */
export async function spawnPostgres(
  opts: { log?: boolean; logStatements?: boolean } = {},
): Promise<Restartable & { logFile?: string }> {
  const dirs = postgresBinDirs();
  const initdb = which('initdb', dirs);
  const postgres = which('postgres', dirs);
  if (!initdb || !postgres) {
    throw new MissingServiceError(
      'PostgreSQL: no FLOTILLA_TEST_DATABASE_URL, no local Docker image of it, and no initdb/postgres binaries; install with `apt-get install -y postgresql`',
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-pg-'));
  chmodSync(dir, 0o777);
  const data = join(dir, 'data');
  const port = await freePort();
  const logFile = opts.log || opts.logStatements ? join(dir, 'server.log') : undefined;
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
    ...(logFile ? ['-c', 'log_line_prefix=%m [%a] '] : []),
    ...(opts.logStatements ? ['-c', 'log_statement=all'] : []),
  ]);
  let child: ChildProcess;
  let pid: number | undefined;
  const startServer = async () => {
    const out = logFile ? openSync(logFile, 'a') : 'ignore';
    child = spawn(srv.bin, srv.args, { stdio: ['ignore', out, out] });
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
    pid = postmasterPid(data);
    track(pid, `postgres server on :${port}`);
  };
  await startServer();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    source: `ephemeral ${postgres} on :${port}`,
    port,
    logFile,
    halt: async () => {
      await stopPostgres(child, pid);
    },
    resume: startServer,
    stop: async () => {
      await stopPostgres(child, pid);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function spawnRedis(): Promise<Restartable> {
  const bin = which('redis-server');
  if (!bin) {
    throw new MissingServiceError(
      'Redis: no FLOTILLA_TEST_REDIS_URL, no local Docker image of it, and no redis-server binary; install with `apt-get install -y redis-server`',
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-redis-'));
  const port = await freePort();
  return restartable(`ephemeral ${bin} on :${port}`, `redis://127.0.0.1:${port}`, port, dir, {
    name: `redis-server on :${port}`,
    bin,
    args: [
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
  });
}

/** A server whose child is the server itself: halted with SIGTERM, started again the same way. */
async function restartable(
  source: string,
  url: string,
  port: number,
  dir: string,
  cmd: { name: string; bin: string; args: string[] },
): Promise<Restartable> {
  let child: ChildProcess | null = null;
  const resume = async () => {
    const c = spawn(cmd.bin, cmd.args, { stdio: 'ignore' });
    child = c;
    track(c.pid, cmd.name);
    await waitForPort(port, c, cmd.name);
  };
  const halt = async () => {
    if (child) await stopChild(child);
    child = null;
  };
  await resume();
  return {
    url,
    source,
    port,
    halt,
    resume,
    stop: async () => {
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function spawnEtcd(): Promise<Restartable> {
  const bin = which('etcd');
  if (!bin) {
    throw new MissingServiceError(
      'etcd: no FLOTILLA_TEST_ETCD_ENDPOINTS, no local Docker image of it, and no etcd binary; install with `apt-get install -y etcd-server`',
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-etcd-'));
  const client = await freePort();
  const peer = await freePort();
  return restartable(`ephemeral ${bin} on :${client}`, `http://127.0.0.1:${client}`, client, dir, {
    name: `etcd on :${client}`,
    bin,
    args: [
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
  });
}

async function fromContainer(service: Service): Promise<Running> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const wrap = (url: string, c: { stop: () => Promise<unknown> }): Running => ({
    url,
    source: `testcontainers ${IMAGES[service]}`,
    stop: async () => {
      await c.stop();
    },
  });
  if (service === 'postgres') {
    const c = await new GenericContainer(IMAGES.postgres)
      .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust' })
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/ready to accept connections/, 2))
      .start();
    return wrap(`postgres://postgres@${c.getHost()}:${c.getMappedPort(5432)}/postgres`, c);
  }
  if (service === 'redis') {
    const c = await new GenericContainer(IMAGES.redis).withExposedPorts(6379).start();
    return wrap(`redis://${c.getHost()}:${c.getMappedPort(6379)}`, c);
  }
  const c = await new GenericContainer(IMAGES.etcd)
    .withCommand([
      'etcd',
      '--listen-client-urls',
      'http://0.0.0.0:2379',
      '--advertise-client-urls',
      'http://0.0.0.0:2379',
    ])
    .withExposedPorts(2379)
    .start();
  return wrap(`http://${c.getHost()}:${c.getMappedPort(2379)}`, c);
}

/** Local binaries first; a container only where they are missing and the image is at hand. */
async function obtain(service: Service, spawnLocal: () => Promise<Running>): Promise<Running> {
  if (!haveBinaries(service) && (await imagePresent(IMAGES[service]))) {
    return fromContainer(service);
  }
  return spawnLocal();
}

/** Starts (or finds) every service; returns their URLs and one function that stops what was started. */
export async function startServices(
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ urls: ServiceUrls; stop: () => Promise<void> }> {
  const started: Running[] = [];
  const given = (url: string | undefined): Running | undefined =>
    url ? { url, source: 'environment', stop: async () => {} } : undefined;

  const pg = given(env.FLOTILLA_TEST_DATABASE_URL);
  const redis = given(env.FLOTILLA_TEST_REDIS_URL);
  const etcd = given(env.FLOTILLA_TEST_ETCD_ENDPOINTS);

  try {
    const spawned = await Promise.allSettled([
      pg ? Promise.resolve(pg) : obtain('postgres', spawnPostgres),
      redis ? Promise.resolve(redis) : obtain('redis', spawnRedis),
      etcd ? Promise.resolve(etcd) : obtain('etcd', spawnEtcd),
    ]);
    const failures: string[] = [];
    const got: Running[] = [];
    for (const r of spawned) {
      if (r.status === 'fulfilled') {
        got.push(r.value);
        if (r.value.source !== 'environment') started.push(r.value);
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
