/**
 * Scenario 1: the coordinator is killed (SIGKILL) at seeded points while a workload of
 * creates, scales, updates and deletes runs, and traffic flows through the proxies; a
 * supervisor (the suite) restarts it at once. After each restart, once the fleet settles:
 * every acknowledged command has its effect, no replica id was started twice, no replica
 * process runs that no actor owns, and every deployment converged.
 *
 * Both topologies: all-in-one (the proxy dies with the coordinator) and a coordinator with two
 * separate proxy processes and a prober (the proxies should not notice).
 */
import { Cluster, settled, type Topology, unsettled } from '../lib/cluster.ts';
import type { Context, Scenario } from '../lib/context.ts';
import { emptyFigures, type Figures, percentile } from '../lib/figures.ts';
import { until } from '../lib/http.ts';
import { replicaStarts, runReplicaProcesses } from '../lib/serve.ts';
import { createDatabase, ownPostgres, ownRedis } from '../lib/services.ts';
import { Traffic } from '../lib/traffic.ts';
import { BASE, Workload } from '../lib/workload.ts';

async function runTopology(ctx: Context, topology: Topology): Promise<Figures> {
  const f = emptyFigures(
    '1. coordinator kill -9',
    topology === 'all-in-one' ? 'all-in-one' : 'coordinator + 2 proxies + prober',
  );
  const t0 = performance.now();
  const rand = ctx.rand.fork(`kill:${topology}`);
  const pg = await ownPostgres();
  const redis = topology === 'separate' ? await ownRedis() : undefined;
  const runId = `${ctx.runId}-${topology}`;
  let cluster: Cluster | undefined;
  try {
    const databaseUrl = await createDatabase(pg.url, 'faults');
    cluster = await Cluster.start({
      topology,
      runId,
      databaseUrl,
      redisUrl: redis?.url,
      logDir: `${ctx.logDir}/kill-${topology}`,
    });
    const c = cluster;
    const coord = c.coordinators[0]!;
    const work = new Workload(() => c.apiUrl, rand.fork('workload'));
    await work.seed();
    await until(
      async () => {
        const vs = await c.list();
        return vs && BASE.every((n) => vs.find((v) => v.name === n && settled(v)));
      },
      120_000,
      'base deployments RUNNING with every route HEALTHY',
    );
    const traffic = new Traffic(
      () => c.proxyUrls.flatMap((p) => BASE.map((n) => `${p}/${n}/v1/models`)),
      4,
    );
    traffic.start();
    const windows: Array<{ from: number; to: number }> = [];
    const converge: number[] = [];
    const startMs: number[] = [];
    const startFailures: string[] = [];
    for (let i = 0; i < ctx.runs; i++) {
      work.start(() => rand.int(50, 300));
      // The seeded kill point: this long into the workload.
      await new Promise((r) => setTimeout(r, rand.int(200, 2_500)));
      const killedAt = performance.now();
      await coord.kill9();
      f.faultsInjected++;
      let back: number;
      try {
        // A supervisor restarts it until it runs (1 s apart, at most 5 times).
        for (let attempt = 1; ; attempt++) {
          try {
            startMs.push(await c.restart(coord));
            break;
          } catch (err) {
            startFailures.push(
              `kill ${i + 1}, start ${attempt}: ${(err as Error).message.slice(0, 300)}`,
            );
            if (attempt >= 5) throw err;
            await new Promise((r) => setTimeout(r, 1_000));
          }
        }
        back = await c.apiBack(c.apiUrl, 180_000);
      } catch (err) {
        // Recorded, and the next kill point goes on (a coordinator that never answers is the finding).
        f.violations.push(`kill ${i + 1}: ${(err as Error).message}`);
        windows.push({ from: killedAt, to: performance.now() });
        await work.stop();
        if (!coord.alive) break;
        continue;
      }
      const backAt = performance.now();
      f.recoverMs.push(backAt - killedAt);
      windows.push({ from: killedAt, to: backAt });
      await work.stop();
      // The fleet converges: every deployment settled, and the model matches.
      let views: Awaited<ReturnType<Cluster['list']>> = null;
      try {
        views = await until(
          async () => {
            const vs = await c.list();
            if (!vs) return null;
            const live = vs.filter((v) => v.state !== 'TERMINATED');
            return live.every(settled) ? vs : null;
          },
          120_000,
          `fleet converges after kill ${i + 1}`,
          200,
        );
        converge.push(performance.now() - killedAt);
      } catch (err) {
        const vs = await c.list();
        f.violations.push(
          `kill ${i + 1}: ${(err as Error).message}: ${vs?.map(unsettled).filter(Boolean).join('; ')}`,
        );
        views = await c.list();
      }
      if (!views) continue;
      const { lost } = work.check(views);
      f.acknowledgedLost += lost.length;
      for (const l of lost) f.violations.push(`kill ${i + 1}: acknowledged command lost: ${l}`);
      // No replica id started twice (a restart by the replica machine counts as its own start).
      const restarts = new Map(
        views.flatMap((v) => v.replicas.map((r) => [r.id, r.restarts] as const)),
      );
      for (const [id, n] of replicaStarts([c.dataDir])) {
        if (n > 1 + (restarts.get(id) ?? 0)) {
          f.duplicateReplicas++;
          f.violations.push(
            `kill ${i + 1}: replica ${id} started ${n} times (restarts ${restarts.get(id) ?? 0})`,
          );
        }
      }
      // No replica process that no actor owns (stopping ones get a few seconds to go).
      const owned = new Set(
        views.filter((v) => v.state !== 'TERMINATED').flatMap((v) => v.replicas.map((r) => r.id)),
      );
      let orphans: string[] = [];
      try {
        await until(
          () => {
            orphans = runReplicaProcesses(runId)
              .filter((p) => !owned.has(p.replicaId))
              .map((p) => `${p.replicaId} (pid ${p.pid})`);
            return orphans.length === 0;
          },
          10_000,
          'no orphan replica',
          200,
        );
      } catch {
        f.orphanReplicas += orphans.length;
        f.violations.push(`kill ${i + 1}: replica processes no actor owns: ${orphans.join(', ')}`);
      }
      // Each live replica has exactly one process.
      const procs = runReplicaProcesses(runId);
      for (const id of owned) {
        const n = procs.filter((p) => p.replicaId === id).length;
        if (n > 1) {
          f.duplicateReplicas++;
          f.violations.push(`kill ${i + 1}: replica ${id} has ${n} processes`);
        }
      }
      ctx.log(
        `  ${topology} kill ${i + 1}/${ctx.runs}: API back in ${Math.round(back)} ms after restart, recovered ${Math.round(backAt - killedAt)} ms, converged ${Math.round(converge.at(-1) ?? Number.NaN)} ms, lost ${lost.length}`,
      );
    }
    await traffic.stop();
    f.runs = ctx.runs;
    const tot = traffic.totals();
    f.requestsSent = tot.sent;
    f.requestsFailed = tot.failed;
    const statuses: Record<string, number> = {};
    for (const w of windows) {
      const s = traffic.window(w.from, w.to);
      f.windowSent += s.sent;
      f.windowFailed += s.failed;
      for (const [k, v] of Object.entries(s.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
    }
    // Failures outside the restart windows (rolling updates, scale-ins, drains).
    const outside = traffic.samples.filter(
      (s) => !s.ok && !windows.some((w) => s.start >= w.from && s.start < w.to),
    );
    f.commandsAcknowledged = work.acknowledged;
    f.notes.push(
      `traffic error rate in the restart windows (kill → API answers again): ${f.windowFailed} of ${f.windowSent} requests; failed answers by status (0 = connection error/timeout): ${JSON.stringify(statuses)}`,
      `failed requests outside the restart windows: ${outside.length} (statuses ${JSON.stringify(countBy(outside.map((s) => String(s.status))))})`,
      `commands: ${work.acknowledged} acknowledged, ${work.unknown} without an answer (effect checked either way), ${work.refused} refused or never sent`,
      `restarts that failed and were retried by the supervisor: ${startFailures.length}${startFailures.length ? ` (first: ${startFailures[0]})` : ''}`,
      `process start (spawn → listening, node startup included) p50 ${Math.round(percentile(startMs, 50))} ms, max ${Math.round(Math.max(...startMs, 0))} ms`,
      `time to recover = kill → the restarted coordinator answers GET /v1/deployments; fleet converged (every deployment RUNNING, replicas and routes HEALTHY) p50 ${Math.round(percentile(converge, 50))} ms, max ${Math.round(Math.max(...converge, 0))} ms after the kill`,
    );
    return f;
  } finally {
    await cluster?.close();
    await redis?.destroy();
    await pg.destroy();
    f.durationMs = performance.now() - t0;
  }
}

function countBy(xs: string[]): Record<string, number> {
  const o: Record<string, number> = {};
  for (const x of xs) o[x] = (o[x] ?? 0) + 1;
  return o;
}

export const coordinatorKill: Scenario = {
  name: 'coordinator-kill',
  title: 'coordinator kill -9 under a workload',
  defaultRuns: { full: 100, quick: 3 },
  async run(ctx) {
    const out: Figures[] = [];
    for (const t of ['all-in-one', 'separate'] as const) out.push(await runTopology(ctx, t));
    return out;
  },
};
