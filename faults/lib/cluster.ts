/**
 * A Flotilla installation as processes: `all-in-one` (one `serve`, its proxy in-process) or
 * `separate` (a coordinator, two proxies and a prober, sharing PostgreSQL and Redis). The
 * coordinator can be killed and restarted on the same ports and data directory, the way a
 * supervisor (systemd, Kubernetes) restarts it.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { call, type DeploymentView, listDeployments, until } from './http.ts';
import { killRun, type Role, ServeProcess } from './serve.ts';
import { freePort } from './services.ts';

export type Topology = 'all-in-one' | 'separate';

export interface ClusterOptions {
  topology: Topology;
  runId: string;
  databaseUrl: string;
  redisUrl?: string;
  etcdEndpoints?: string;
  /** Route health classification tick, seconds. */
  healthIntervalS?: number;
  /** Coordinators (each its own process; with etcd, one leads). Default 1. */
  coordinators?: number;
  logDir: string;
}

export class Cluster {
  readonly coordinators: ServeProcess[] = [];
  readonly nodes: ServeProcess[] = [];
  /** Shared by the coordinators: the process backend adopts replicas through it. */
  readonly dataDir: string;
  apiUrl = '';
  proxyUrls: string[] = [];

  private constructor(readonly opts: ClusterOptions) {
    this.dataDir = mkdtempSync(join(tmpdir(), 'flotilla-faults-data-'));
  }

  static async start(opts: ClusterOptions): Promise<Cluster> {
    const c = new Cluster(opts);
    try {
      await c.boot();
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  private async proc(
    role: Role,
    label: string,
    env: Record<string, string>,
  ): Promise<ServeProcess> {
    const o = this.opts;
    return new ServeProcess({
      role,
      label,
      apiPort: await freePort(),
      proxyPort: await freePort(),
      dataDir:
        role === 'all' || role === 'coordinator'
          ? this.dataDir
          : mkdtempSync(join(tmpdir(), `flotilla-faults-${role}-`)),
      runId: o.runId,
      logDir: o.logDir,
      env,
      extra: [
        '--health-interval',
        String(o.healthIntervalS ?? 0.5),
        '--log-level',
        'info',
        '--redis-prefix',
        `faults:${o.runId}:`,
      ],
    });
  }

  private async boot(): Promise<void> {
    const o = this.opts;
    const env: Record<string, string> = { DATABASE_URL: o.databaseUrl };
    if (o.redisUrl) env.REDIS_URL = o.redisUrl;
    if (o.etcdEndpoints) env.ETCD_ENDPOINTS = o.etcdEndpoints;
    const role: Role = o.topology === 'all-in-one' ? 'all' : 'coordinator';
    const n = o.coordinators ?? 1;
    for (let i = 0; i < n; i++) {
      const url = new URL(o.databaseUrl);
      url.searchParams.set('application_name', `coord${i}`);
      this.coordinators.push(
        await this.proc(role, `coord${i}`, { ...env, DATABASE_URL: url.toString() }),
      );
    }
    // The first coordinator leads (or is alone); the others stand by.
    await this.coordinators[0]!.start();
    for (const c of this.coordinators.slice(1)) {
      await c.start((l) => l.startsWith('standby') || l.startsWith('api '));
    }
    this.apiUrl = `http://127.0.0.1:${this.coordinators[0]!.spec.apiPort}`;
    if (o.topology === 'all-in-one') {
      this.proxyUrls = [`http://127.0.0.1:${this.coordinators[0]!.spec.proxyPort}`];
      return;
    }
    if (!o.redisUrl) throw new Error('separate topology needs Redis');
    const nodeEnv = { REDIS_URL: o.redisUrl };
    const p1 = await this.proc('proxy', 'proxy1', nodeEnv);
    const p2 = await this.proc('proxy', 'proxy2', nodeEnv);
    const prober = await this.proc('prober', 'prober', nodeEnv);
    this.nodes.push(p1, p2, prober);
    await Promise.all(this.nodes.map((p) => p.start()));
    this.proxyUrls = [p1, p2].map((p) => `http://127.0.0.1:${p.spec.proxyPort}`);
  }

  /** The coordinator that leads now (answers /v1), if any. */
  async leader(): Promise<ServeProcess | undefined> {
    for (const c of this.coordinators) {
      if (!c.alive) continue;
      const r = await call(
        `http://127.0.0.1:${c.spec.apiPort}`,
        'GET',
        '/v1/deployments',
        undefined,
        2_000,
      );
      if (r.status === 200) return c;
    }
    return undefined;
  }

  apiOf(c: ServeProcess): string {
    return `http://127.0.0.1:${c.spec.apiPort}`;
  }

  /** Restarts a dead coordinator; resolves when it listens (or stands by). */
  async restart(c: ServeProcess): Promise<number> {
    return c.start((l) => l.startsWith('api ') || l.startsWith('standby'));
  }

  /** Every deployment's view from the API at `api` (default: the first coordinator). */
  async list(api = this.apiUrl): Promise<DeploymentView[] | null> {
    return listDeployments(api);
  }

  /** Waits until the API answers a list again; ms waited. */
  async apiBack(api = this.apiUrl, timeoutMs = 60_000): Promise<number> {
    const t0 = performance.now();
    await until(
      async () => (await listDeployments(api, 2_000)) !== null,
      timeoutMs,
      `API ${api} answers`,
      25,
    );
    return performance.now() - t0;
  }

  /** Stops every process of the run (SIGTERM, then SIGKILL), replicas included. */
  async close(): Promise<void> {
    await Promise.all([...this.nodes, ...this.coordinators].map((p) => p.stop(10_000)));
    await killRun(this.opts.runId);
  }
}

/** Why a deployment has not settled yet (null: settled): the target's replicas and routes all HEALTHY. */
export function unsettled(v: DeploymentView): string | null {
  if (v.state === 'ERROR' || v.state === 'TERMINATED') return null;
  if (v.state === 'DESTROYING') return `${v.name} DESTROYING`;
  const routes = v.routes.filter((r) => r.state !== 'TERMINATED');
  if (v.target_replicas === 0) {
    return v.replicas.length === 0 && routes.length === 0
      ? null
      : `${v.name} target 0, ${v.replicas.length} replicas`;
  }
  if (v.state !== 'RUNNING') return `${v.name} ${v.state}`;
  if (v.replicas.length !== v.target_replicas)
    return `${v.name} ${v.replicas.length}/${v.target_replicas} replicas`;
  const bad = v.replicas.find((r) => r.state !== 'HEALTHY' || r.revision_id !== v.revision_id);
  if (bad)
    return `${v.name} replica ${bad.id} ${bad.state} rev ${bad.revision_id === v.revision_id ? 'current' : 'old'}`;
  if (routes.length !== v.target_replicas || routes.some((r) => r.state !== 'HEALTHY')) {
    return `${v.name} routes ${routes.map((r) => r.state).join(',')}`;
  }
  return null;
}

export function settled(v: DeploymentView): boolean {
  return unsettled(v) === null;
}
