/** The common start of the dependency scenarios: own services, a cluster, two deployments, traffic. */
import { Cluster, settled, type Topology } from './cluster.ts';
import type { Context } from './context.ts';
import type { Figures } from './figures.ts';
import { call, type DeploymentView, until } from './http.ts';
import { createDatabase, ownEtcd, ownPostgres, ownRedis, type Service } from './services.ts';
import { Traffic } from './traffic.ts';
import { BASE, createWithRetry } from './workload.ts';

export interface Bed {
  cluster: Cluster;
  traffic: Traffic;
  pg: Service & { logFile: string };
  redis: Service;
  etcd: Service | undefined;
  runId: string;
  close(): Promise<void>;
}

export const HEALTH_INTERVAL_S = 0.5;

export async function testBed(
  ctx: Context,
  topology: Topology,
  label: string,
  opts: { etcd?: boolean; coordinators?: number; logStatements?: boolean } = {},
): Promise<Bed> {
  const pg = await ownPostgres({ logStatements: opts.logStatements ?? false });
  const redis = await ownRedis();
  const etcd = opts.etcd ? await ownEtcd() : undefined;
  const runId = `${ctx.runId}-${label}`;
  let cluster: Cluster | undefined;
  const close = async () => {
    await cluster?.close();
    await Promise.all([pg.destroy(), redis.destroy(), etcd?.destroy()]);
  };
  try {
    const databaseUrl = await createDatabase(pg.url, 'faults');
    cluster = await Cluster.start({
      topology,
      runId,
      databaseUrl,
      redisUrl: redis.url,
      etcdEndpoints: etcd?.url,
      coordinators: opts.coordinators ?? 1,
      healthIntervalS: HEALTH_INTERVAL_S,
      logDir: `${ctx.logDir}/${label}`,
    });
    const c = cluster;
    for (const name of BASE) await createWithRetry(c.apiUrl, name);
    await waitSettled(c, 120_000);
    const traffic = new Traffic(
      () => c.proxyUrls.flatMap((p) => BASE.map((n) => `${p}/${n}/v1/models`)),
      4,
    );
    traffic.start();
    // Every proxy serves before the fault.
    await until(
      () => c.proxyUrls.every((p) => traffic.samples.some((s) => s.ok && s.target.startsWith(p))),
      30_000,
      'every proxy serves',
    );
    return { cluster: c, traffic, pg, redis, etcd, runId, close };
  } catch (err) {
    await close();
    throw err;
  }
}

export async function waitSettled(
  c: Cluster,
  timeoutMs: number,
  api?: string,
): Promise<DeploymentView[]> {
  return until(
    async () => {
      const vs = await c.list(api);
      return vs && vs.length > 0 && vs.every(settled) ? vs : null;
    },
    timeoutMs,
    'every deployment RUNNING with its replicas and routes HEALTHY',
    200,
  );
}

export async function setHealth(endpoint: string, ok: boolean): Promise<void> {
  const r = await call(endpoint, 'POST', '/admin/health', { ok }, 5_000);
  if (r.status >= 300 || r.status === 0)
    throw new Error(`${endpoint}/admin/health: ${r.status} ${r.error ?? ''}`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A violation for each process of the cluster that exited (none may, through an outage). */
export function exitedProcesses(f: Figures, c: Cluster): void {
  for (const p of [...c.coordinators, ...c.nodes]) {
    if (!p.alive) f.violations.push(`${p.spec.label} exited (${p.exitCode ?? p.exitSignal})`);
  }
}

/** Stops the bed's traffic; its totals and the runs made go into the figures. */
export async function trafficTotals(f: Figures, bed: Bed, runs: number): Promise<void> {
  await bed.traffic.stop();
  const tot = bed.traffic.totals();
  f.runs = runs;
  f.requestsSent = tot.sent;
  f.requestsFailed = tot.failed;
}

/**
 * A dependency outage's variants, each on its own bed (closed, and its duration set, however
 * `body` ends). Quick mode (and npm test) runs the separate-process topology only.
 */
export async function outageVariants(
  ctx: Context,
  label: string,
  figures: (topology: Topology) => Figures,
  body: (f: Figures, bed: Bed, rand: Context['rand'], topology: Topology) => Promise<void>,
): Promise<Figures[]> {
  const out: Figures[] = [];
  for (const topology of ctx.quick
    ? (['separate'] as const)
    : (['separate', 'all-in-one'] as const)) {
    const f = figures(topology);
    const t0 = performance.now();
    const rand = ctx.rand.fork(topology);
    const bed = await testBed(ctx, topology, `${label}-${topology}`);
    try {
      await body(f, bed, rand, topology);
    } finally {
      await bed.traffic.stop();
      await bed.close();
      f.durationMs = performance.now() - t0;
    }
    out.push(f);
  }
  return out;
}
