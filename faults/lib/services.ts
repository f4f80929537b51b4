/**
 * The suite's own PostgreSQL, Redis and etcd: local binaries on free ports in a temp dir,
 * which a scenario may stop and start again (same port, same data). The system servers on
 * 5432/6379 are never touched.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../test/harness/services.ts';

export { freePort };

export interface Service {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  /** Stops the server (clean, fast shutdown) and waits until it is gone. */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same data; resolves once it answers. */
  start(): Promise<void>;
  /** Stops it for good and deletes its data. */
  destroy(): Promise<void>;
  /** Pids of the server's processes (for the end-of-run check). */
  pids(): number[];
}

/** Services started and not destroyed yet: `destroyAll()` stops them (an aborted run's cleanup). */
const live = new Set<Service>();

export async function destroyAllServices(): Promise<void> {
  await Promise.all([...live].map((s) => s.destroy().catch(() => {})));
}

function tracked<T extends Service>(s: T): T {
  live.add(s);
  const destroy = s.destroy;
  return Object.assign(s, {
    destroy: async () => {
      live.delete(s);
      await destroy();
    },
  });
}

function which(bin: string, dirs: string[] = []): string | undefined {
  for (const dir of [...dirs, ...(process.env.PATH ?? '').split(':')]) {
    if (dir && existsSync(join(dir, bin))) return join(dir, bin);
  }
  return undefined;
}

function pgBinDirs(): string[] {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .sort()
    .reverse()
    .map((v) => join(root, v, 'bin'));
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export async function waitGone(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (isAlive(pid)) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

async function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.connect(port, '127.0.0.1');
  });
}

async function waitPort(port: number, child: ChildProcess, name: string, ms = 30_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`${name} exited with code ${child.exitCode}`);
    if (await portAnswers(port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${name} did not listen on ${port} within ${ms} ms`);
}

async function stopChild(child: ChildProcess | null, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

/**
 * PostgreSQL with statement logging available: `logFile` receives the server's log, one line
 * per statement when `logStatements` is set, prefixed with the time (ms) and application name.
 */
export async function ownPostgres(
  opts: { logStatements?: boolean } = {},
): Promise<Service & { logFile: string }> {
  const dirs = pgBinDirs();
  const initdb = which('initdb', dirs);
  const postgres = which('postgres', dirs);
  const isready = which('pg_isready', dirs);
  if (!initdb || !postgres)
    throw new Error('PostgreSQL binaries missing: apt-get install -y postgresql');
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-faults-pg-'));
  chmodSync(dir, 0o777);
  const data = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  const port = await freePort();
  const asUser = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
  const cmd = (bin: string, args: string[]) => {
    const full = [...asUser, bin, ...args];
    return { bin: full[0] as string, args: full.slice(1) };
  };
  const init = cmd(initdb, [
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
  let child: ChildProcess | null = null;
  const postmasterPid = () => {
    try {
      const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  };
  const start = async () => {
    const args = [
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
      '-c',
      'log_line_prefix=%m [%a] ',
      ...(opts.logStatements ? ['-c', 'log_statement=all'] : []),
    ];
    const srv = cmd(postgres, args);
    const fd = openSync(logFile, 'a');
    child = spawn(srv.bin, srv.args, { stdio: ['ignore', fd, fd] });
    await waitPort(port, child, 'postgres');
    const until = Date.now() + 20_000;
    for (;;) {
      try {
        if (isready) {
          execFileSync(isready, ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres'], {
            stdio: 'ignore',
          });
        }
        break;
      } catch (e) {
        if (Date.now() > until) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  const stop = async () => {
    const pid = postmasterPid();
    if (pid !== undefined && isAlive(pid)) {
      process.kill(pid, 'SIGINT');
      if (!(await waitGone(pid, 10_000))) {
        process.kill(pid, 'SIGKILL');
        await waitGone(pid, 5_000);
      }
    }
    await stopChild(child, 'SIGTERM');
    child = null;
  };
  await start();
  return tracked({
    name: 'postgres',
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    logFile,
    start,
    stop,
    destroy: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    pids: () =>
      [postmasterPid(), child?.pid].filter((p): p is number => p !== undefined && isAlive(p)),
  });
}

export async function ownRedis(): Promise<Service> {
  const bin = which('redis-server');
  if (!bin) throw new Error('redis-server missing: apt-get install -y redis-server');
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-faults-redis-'));
  const port = await freePort();
  let child: ChildProcess | null = null;
  const start = async () => {
    child = spawn(
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
    await waitPort(port, child, 'redis-server');
  };
  const stop = async () => {
    await stopChild(child, 'SIGTERM');
    child = null;
  };
  await start();
  return tracked({
    name: 'redis',
    url: `redis://127.0.0.1:${port}`,
    port,
    start,
    stop,
    destroy: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    pids: () => (child?.pid && isAlive(child.pid) ? [child.pid] : []),
  });
}

export async function ownEtcd(): Promise<Service> {
  const bin = which('etcd');
  if (!bin) throw new Error('etcd missing: apt-get install -y etcd-server');
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-faults-etcd-'));
  const port = await freePort();
  const peer = await freePort();
  let child: ChildProcess | null = null;
  const start = async () => {
    child = spawn(
      bin,
      [
        '--data-dir',
        join(dir, 'data'),
        '--listen-client-urls',
        `http://127.0.0.1:${port}`,
        '--advertise-client-urls',
        `http://127.0.0.1:${port}`,
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
    await waitPort(port, child, 'etcd');
  };
  const stop = async () => {
    await stopChild(child, 'SIGTERM');
    child = null;
  };
  await start();
  return tracked({
    name: 'etcd',
    url: `http://127.0.0.1:${port}`,
    port,
    start,
    stop,
    destroy: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    pids: () => (child?.pid && isAlive(child.pid) ? [child.pid] : []),
  });
}

/** A fresh database on `pg` for one scenario; its URL (with an application name, when given). */
export async function createDatabase(pgUrl: string, name: string): Promise<string> {
  const { default: pg } = await import('pg');
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(pgUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
