/**
 * Shared pieces of the proxy integration tests: replica processes, routing tables, and a
 * small HTTP client with a pool of its own.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { afterEach } from 'vitest';
import type {
  BalancingStrategy,
  DeploymentRoutes,
  RouteState,
  RoutingTable,
} from '../../../src/domain/routing.ts';
import { waitFor as waitForCondition } from '../../harness/wait.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/replica.mjs', import.meta.url));

export interface Replica {
  id: string;
  url: string;
  port: number;
  proc: ChildProcess;
  stats(): Promise<{
    id: string;
    requests: number;
    aborted: number;
    inflight: number;
    maxInflight: number;
  }>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const running = new Set<Replica>();

/** Starts a fixture replica as its own process and waits until it listens. */
export function startReplica(
  id: string,
  env: Record<string, string | number> = {},
): Promise<Replica> {
  return spawnReplica(id, [FIXTURE], env, /LISTENING (\d+)/);
}

const FLOTILLA_BIN = fileURLToPath(new URL('../../../bin/flotilla.js', import.meta.url));

/** Starts the OpenAI-style echo model server (`flotilla echo-server`) as its own process. */
export function startEchoReplica(id: string, args: string[] = []): Promise<Replica> {
  return spawnReplica(
    id,
    [FLOTILLA_BIN, 'echo-server', '--port', '0', ...args],
    { FLOTILLA_REPLICA_ID: id },
    /listening on http:\/\/[^:]+:(\d+)/,
  );
}

async function spawnReplica(
  id: string,
  argv: string[],
  env: Record<string, string | number>,
  listening: RegExp,
): Promise<Replica> {
  const proc = spawn(process.execPath, argv, {
    env: {
      ...process.env,
      REPLICA_ID: id,
      PORT: '0',
      ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)])),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`replica ${id} did not start`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = listening.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`replica ${id} exited (${code}) before listening`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const replica: Replica = {
    id,
    url,
    port,
    proc,
    async stats() {
      const r = await request(`${url}/stats`, { dispatcher: statsAgent });
      return (await r.body.json()) as Awaited<ReturnType<Replica['stats']>>;
    },
    async kill(signal = 'SIGKILL') {
      running.delete(replica);
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill(signal);
      await exited;
    },
  };
  running.add(replica);
  return replica;
}

const statsAgent = new Agent({ keepAliveTimeout: 1_000 });

/** Kills every replica still running (afterEach). */
export async function stopReplicas(): Promise<void> {
  await Promise.all([...running].map((r) => r.kill('SIGKILL')));
}

interface Closable {
  close(): unknown;
}

/**
 * The teardown every proxy test file shares: what a test registers here is closed after it, in
 * this order: proxies (together), clients (together), servers, other closers (last registered
 * first), then every replica process is killed. Call once at the top of a test file.
 */
export function proxyTestFixture() {
  const fixture = {
    proxies: [] as Closable[],
    clients: [] as Closable[],
    servers: [] as Closable[],
    closers: [] as (() => unknown)[],
  };
  afterEach(async () => {
    await Promise.all(fixture.proxies.splice(0).map((p) => p.close()));
    await Promise.all(fixture.clients.splice(0).map((c) => c.close()));
    for (const s of fixture.servers.splice(0)) s.close();
    for (const close of fixture.closers.splice(0).reverse()) await close();
    await stopReplicas();
  });
  return fixture;
}

let nextVersion = 1;

export interface DeploymentSpec {
  id?: string;
  name: string;
  strategy?: BalancingStrategy;
  retries?: number;
  request_timeout_s?: number;
  replicas: { replica: Replica; state?: RouteState; weight?: number; routeId?: string }[];
  admission?: Record<string, number>;
}

export function deployment(spec: DeploymentSpec): DeploymentRoutes {
  const d: DeploymentRoutes & { admission?: Record<string, number> } = {
    deploymentId: spec.id ?? `dep-${spec.name}`,
    name: spec.name,
    routing: {
      strategy: spec.strategy ?? 'round_robin',
      request_timeout_s: spec.request_timeout_s ?? 30,
      retries: spec.retries ?? 2,
    },
    routes: spec.replicas.map((r) => ({
      routeId: r.routeId ?? `route-${r.replica.id}`,
      replicaId: r.replica.id,
      url: r.replica.url,
      state: r.state ?? 'HEALTHY',
      weight: r.weight ?? 1,
    })),
  };
  if (spec.admission) d.admission = spec.admission;
  return d;
}

/** A table with a fresh, increasing version. */
export function table(
  deployments: DeploymentRoutes[],
  endpoints: RoutingTable['endpoints'] = [],
): RoutingTable {
  return { version: nextVersion++, deployments, endpoints };
}

/** A client with its own keep-alive pool, so tests do not share sockets. */
export function client(connections = 256) {
  const agent = new Agent({ connections, keepAliveTimeout: 10_000 });
  return {
    agent,
    async get(
      url: string,
      opts: {
        headers?: Record<string, string>;
        method?: string;
        body?: string;
        signal?: AbortSignal;
      } = {},
    ) {
      const r = await request(url, {
        dispatcher: agent,
        method: (opts.method ?? 'GET') as 'GET',
        headers: opts.headers,
        body: opts.body,
        signal: opts.signal,
      });
      const text = await r.body.text();
      return { status: r.statusCode, headers: r.headers, text };
    },
    close: () => agent.close(),
  };
}

/** Polls `check` until it returns a truthy value or the deadline passes. */
/** Polls `check` until truthy (test/harness/wait.ts, with this folder's argument order). */
export function waitFor<T>(
  check: () => T | Promise<T>,
  what: string,
  timeoutMs = 10_000,
  everyMs = 10,
): Promise<NonNullable<T>> {
  return waitForCondition(check, { timeoutMs, intervalMs: everyMs, message: what });
}

/** Runs `fn` `total` times with at most `concurrency` at once. */
export async function runConcurrent<T>(
  total: number,
  concurrency: number,
  fn: (i: number) => Promise<T>,
): Promise<T[]> {
  const out: T[] = new Array(total);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async () => {
      while (next < total) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

/** Counts of each `x-flotilla-replica` value. */
export function countBy(values: (string | undefined)[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const v of values) c[String(v)] = (c[String(v)] ?? 0) + 1;
  return c;
}
