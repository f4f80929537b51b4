/**
 * Processes of a test cluster: `flotilla serve --role ROLE` (or `serve` alone, role `all`) on
 * real PostgreSQL and Redis from the harness (and etcd when asked). `spawnRole` starts one and
 * keeps its stdout lines; `startRole` resolves with the "name url" lines it printed once it
 * listens: `api` for a coordinator (or `all`), `proxy` and `proxy_api` for a proxy, `prober`
 * for a prober. `useCluster` gives a test file its own database and Redis prefix and stops
 * every process it started after the file's tests.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { stopChildren } from './child-processes.ts';
import { createDatabase, services } from './isolation.ts';
import { freePort } from './services.ts';

const REPO = realpathSync(fileURLToPath(new URL('../../', import.meta.url)));

export interface ClusterOptions {
  databaseUrl: string;
  /** Redis key prefix shared by the cluster's processes. */
  prefix: string;
  /** Started processes are pushed here, for the caller's teardown. */
  children: ChildProcess[];
  /** One data directory for every process (default: a fresh one per process). */
  dataDir?: string;
  /** Give the processes ETCD_ENDPOINTS (coordinators elected through etcd). */
  etcd?: boolean;
}

/** One started process, with its stdout lines as they arrived. */
export interface RoleProcess {
  child: ChildProcess;
  apiPort: number;
  lines: Array<{ at: number; text: string }>;
  stdout(): string;
  stderr(): string;
  /** The first stdout line starting with `prefix`; rejects when the process exits first. */
  waitLine(prefix: string, timeoutMs?: number): Promise<{ at: number; text: string }>;
}

/** Starts `flotilla serve --role ROLE` (no `--role` for `all`) and returns at once. */
export async function spawnRole(
  cluster: ClusterOptions,
  role: string,
  extra: string[] = [],
): Promise<RoleProcess> {
  const apiPort = await freePort();
  const proxyPort = await freePort();
  const child = spawn(
    process.execPath,
    [
      'bin/flotilla.js',
      'serve',
      ...(role === 'all' ? [] : ['--role', role]),
      '--api-port',
      String(apiPort),
      '--proxy-port',
      String(proxyPort),
      '--data-dir',
      cluster.dataDir ?? mkdtempSync(join(tmpdir(), `flotilla-${role}-`)),
      '--model-root',
      REPO,
      '--health-interval',
      '0.5',
      '--redis-prefix',
      cluster.prefix,
      ...extra,
    ],
    {
      cwd: REPO,
      env: {
        ...process.env,
        DATABASE_URL: cluster.databaseUrl,
        REDIS_URL: services().redisUrl,
        ...(cluster.etcd ? { ETCD_ENDPOINTS: services().etcdEndpoints } : {}),
        FLOTILLA_API_TOKEN: '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  cluster.children.push(child);
  let out = '';
  let err = '';
  let partial = '';
  const lines: RoleProcess['lines'] = [];
  child.stdout!.on('data', (d) => {
    out += d;
    partial += d;
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const text of parts) lines.push({ at: performance.now(), text });
  });
  child.stderr!.on('data', (d) => {
    err += d;
  });
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const node: RoleProcess = {
    child,
    apiPort,
    lines,
    stdout: () => out,
    stderr: () => err,
    waitLine: (prefix, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        const find = () => lines.find((l) => l.text.startsWith(prefix));
        const failure = (why: string) =>
          new Error(
            `${role} (pid ${child.pid}) ${why} before printing "${prefix}":\n${out}\n${err.slice(-2000)}`,
          );
        const found = find();
        if (found) return resolve(found);
        if (exited) return reject(failure(`exited ${child.exitCode}`));
        const onData = () => {
          const line = find();
          if (!line) return;
          done();
          resolve(line);
        };
        const onExit = (code: number | null) => {
          done();
          reject(failure(`exited ${code}`));
        };
        const timer = setTimeout(() => {
          done();
          reject(failure(`did not answer in ${timeoutMs} ms`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          child.stdout!.off('data', onData);
          child.off('exit', onExit);
        };
        child.stdout!.on('data', onData);
        child.once('exit', onExit);
      }),
  };
  return node;
}

/** Starts a role and resolves with the "name url" lines it printed once it listens. */
export async function startRole(
  cluster: ClusterOptions,
  role: string,
  extra: string[] = [],
): Promise<Record<string, string>> {
  const node = await spawnRole(cluster, role, extra);
  const want =
    role === 'coordinator' || role === 'all'
      ? ['api']
      : role === 'proxy'
        ? ['proxy', 'proxy_api']
        : ['prober'];
  for (const w of want) await node.waitLine(`${w} `);
  return Object.fromEntries(
    node.lines
      .map((l) => l.text.split(' '))
      .filter((p) => p.length === 2)
      .map(([k, v]) => [k!, v!]),
  );
}

/**
 * A cluster for one test file: a fresh database `flotilla_<name>_<random>` created before its
 * tests, Redis prefix `<name>:<database>:`, every process stopped after them (then `afterStop`).
 */
export function useCluster(
  name: string,
  opts: { dataDir?: string; etcd?: boolean; afterStop?: () => void | Promise<void> } = {},
) {
  const dbName = `flotilla_${name}_${randomBytes(4).toString('hex')}`;
  let databaseUrl = '';
  const cluster: ClusterOptions = {
    get databaseUrl() {
      return databaseUrl;
    },
    prefix: `${name}:${dbName}:`,
    children: [],
    ...(opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {}),
    ...(opts.etcd ? { etcd: true } : {}),
  };
  beforeAll(async () => {
    databaseUrl = await createDatabase(dbName);
  });
  afterAll(async () => {
    await stopChildren(cluster.children);
    await opts.afterStop?.();
  });
  return {
    cluster,
    prefix: cluster.prefix,
    startRole: (role: string, extra: string[] = []) => startRole(cluster, role, extra),
    spawnRole: (role: string, extra: string[] = []) => spawnRole(cluster, role, extra),
  };
}

/** POST /v1/deployments on a coordinator; the response (201 expected by the caller). */
export function deploy(api: string, body: Record<string, unknown>): Promise<Response> {
  return fetch(`${api}/v1/deployments`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

/** The echo example with a fast health check, as the cluster tests deploy it. */
export function echoDeployment(replicas: number, extra: Record<string, unknown> = {}) {
  return {
    name: 'echo',
    model_path: 'examples/echo',
    replicas,
    health_check: { interval_s: 0.5, timeout_s: 0.5, unhealthy_threshold: 2 },
    ...extra,
  };
}

/** `n` requests to `/echo/v1/models` through a proxy, one at a time: the replica of each 200. */
export async function replicaHits(proxy: string, n: number): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${proxy}/echo/v1/models`);
    if (r.status === 200) seen.push(r.headers.get('x-flotilla-replica') ?? '');
    else await r.arrayBuffer();
  }
  return seen;
}
