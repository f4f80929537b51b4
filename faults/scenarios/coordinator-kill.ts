/**
 * Scenario 1: the coordinator is killed (SIGKILL) at seeded points while a workload of
 * creates, scales, updates and deletes runs, and traffic flows through the proxies; a
 * supervisor (the suite) restarts it at once. After each restart, once the fleet settles:
 * every acknowledged command has its effect, no replica id was started twice, no replica
 * process runs that no actor owns, and every deployment converged.
 *
 * Both topologies, side by side (each its own PostgreSQL, Redis and processes): all-in-one (the
 * proxy dies with the coordinator) and a coordinator with two separate proxy processes and a
 * prober (the proxies should not notice).
 *
 * One environment per topology serves every kill point: a point runs the workload, kills the
 * coordinator at its seeded moment (point i's draws come from its own fork of the seed, so
 * `--seed` replays the same points), restarts it, waits for the fleet to settle and checks
 * what this point could have broken: the commands sent since the last check, the replicas whose
 * logs changed since the point began, and the whole run's processes (no orphan, no replica id
 * running twice). Only a point that leaves the environment unusable (the coordinator does not
 * come back, or the fleet does not converge) has it torn down and a fresh one built; the
 * violation is counted either way.
 */
import { Cluster, settled, type Topology, unsettled } from '../lib/cluster.ts';
import type { Context, Scenario } from '../lib/context.ts';
import { emptyFigures, type Figures, percentile } from '../lib/figures.ts';
import { type DeploymentView, until } from '../lib/http.ts';
import { replicaStarts, runReplicaProcesses } from '../lib/serve.ts';
import { createDatabase, ownPostgres, ownRedis } from '../lib/services.ts';
import { Traffic } from '../lib/traffic.ts';
import { BASE, Workload } from '../lib/workload.ts';

/** Convergence: given up when nothing changed for STALL_MS, or after CONVERGE_MS in all. */
const CONVERGE_MS = 150_000;
const STALL_MS = 60_000;

interface Env {
  cluster: Cluster;
  work: Workload;
  runId: string;
}

/** Waits until every live deployment settled; null and why not, when it does not. */
async function converge(
  c: Cluster,
): Promise<{ views: DeploymentView[] | null; why: string; stalled: boolean }> {
  const t0 = performance.now();
  let last = '';
  let lastChange = t0;
  for (;;) {
    const vs = await c.list();
    const now = performance.now();
    if (!vs && last === '') last = 'the API does not answer GET /v1/deployments';
    if (vs) {
      const why = vs
        .filter((v) => v.state !== 'TERMINATED')
        .map(unsettled)
        .filter(Boolean)
        .join('; ');
      if (!why) return { views: vs, why: '', stalled: false };
      if (why !== last) {
        last = why;
        lastChange = now;
      }
    }
    const stalled = now - lastChange > STALL_MS;
    if (stalled || now - t0 > CONVERGE_MS) return { views: null, why: last, stalled };
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function runTopology(ctx: Context, topology: Topology): Promise<Figures> {
  const f = emptyFigures(
    '1. coordinator kill -9',
    topology === 'all-in-one' ? 'all-in-one' : 'coordinator + 2 proxies + prober',
  );
  const t0 = performance.now();
  const rand = ctx.rand.fork(`kill:${topology}`);
  const pg = await ownPostgres();
  const redis = topology === 'separate' ? await ownRedis() : undefined;
  let env: Env | undefined;
  let envs = 0;
  const rebuilds: string[] = [];
  // Totals of the environments already torn down (the workload's counters are per environment).
  const done = { acknowledged: 0, unknown: 0, refused: 0 };
  const retire = async () => {
    if (!env) return;
    done.acknowledged += env.work.acknowledged;
    done.unknown += env.work.unknown;
    done.refused += env.work.refused;
    const old = env;
    env = undefined;
    await old.work.stop();
    await old.cluster.close();
  };
  const open = async (): Promise<Env> => {
    envs++;
    const suffix = envs === 1 ? '' : `-env${envs}`;
    const runId = `${ctx.runId}-${topology}${suffix}`;
    const databaseUrl = await createDatabase(pg.url, `faults${envs}`);
    const cluster = await Cluster.start({
      topology,
      runId,
      databaseUrl,
      redisUrl: redis?.url,
      logDir: `${ctx.logDir}/kill-${topology}${suffix}`,
    });
    try {
      const work = new Workload(() => cluster.apiUrl, rand.fork(`workload${suffix}`));
      await work.seed();
      await until(
        async () => {
          const vs = await cluster.list();
          return vs && BASE.every((n) => vs.find((v) => v.name === n && settled(v)));
        },
        120_000,
        'base deployments RUNNING with every route HEALTHY',
      );
      return { cluster, work, runId };
    } catch (err) {
      await cluster.close();
      throw err;
    }
  };
  const traffic = new Traffic(
    () => (env ? env.cluster.proxyUrls.flatMap((p) => BASE.map((n) => `${p}/${n}/v1/models`)) : []),
    4,
    // 4 loops, 100 ms apart: enough samples per restart window, without the proxies and
    // replicas taking the CPU the restarting coordinator needs on a loaded machine.
    100,
  );
  try {
    env = await open();
    traffic.start();
    const windows: Array<{ from: number; to: number }> = [];
    const converged: number[] = [];
    const startMs: number[] = [];
    const startFailures: string[] = [];
    const stalls: string[] = [];
    const stuckRollouts: number[] = [];
    // Per replica id: the most restarts any view showed (deleted deployments keep theirs), and
    // the ids already reported twice (a duplicate is counted once).
    const restarts = new Map<string, number>();
    const duplicates = new Set<string>();
    let points = 0;
    for (let i = 0; i < ctx.runs; i++) {
      if (ctx.stopAt !== undefined && performance.now() > ctx.stopAt) {
        ctx.log(`  ${topology}: --max-min reached after ${points} of ${ctx.runs} kill points`);
        break;
      }
      const k = `kill ${i + 1}`;
      if (!env) {
        try {
          env = await open();
        } catch (err) {
          f.violations.push(`${k}: a fresh environment did not start: ${(err as Error).message}`);
          break;
        }
      }
      const { cluster: c, work } = env;
      const coord = c.coordinators[0]!;
      const point = rand.fork(`point:${i}`);
      const pointStart = Date.now();
      points++;
      work.start(() => point.int(50, 300));
      // The seeded kill point: this long into the workload.
      await new Promise((r) => setTimeout(r, point.int(200, 2_500)));
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
            startFailures.push(`${k}, start ${attempt}: ${(err as Error).message.slice(0, 300)}`);
            if (attempt >= 5) throw err;
            await new Promise((r) => setTimeout(r, 1_000));
          }
        }
        back = await c.apiBack(c.apiUrl, 180_000);
      } catch (err) {
        // The finding is recorded; a coordinator that never answers leaves nothing to check on.
        f.violations.push(`${k}: ${(err as Error).message}`);
        ctx.log(
          `  ${topology} ${k}/${ctx.runs}: coordinator did not come back: ${(err as Error).message.slice(0, 300)}`,
        );
        windows.push({ from: killedAt, to: performance.now() });
        rebuilds.push(`${k}: coordinator did not come back`);
        await retire();
        continue;
      }
      const backAt = performance.now();
      f.recoverMs.push(backAt - killedAt);
      windows.push({ from: killedAt, to: backAt });
      await work.stop();
      // The fleet converges: every deployment settled, and the model matches.
      const conv = await converge(c);
      let views = conv.views;
      if (views) converged.push(performance.now() - killedAt);
      else {
        const waited = Math.round(performance.now() - backAt);
        f.violations.push(
          `${k}: fleet converges after ${k} (not within ${waited} ms): ${conv.why}`,
        );
        if (conv.stalled) stalls.push(`${k} (${waited} ms)`);
        if (/rev old/.test(conv.why)) stuckRollouts.push(i + 1);
        views = await c.list();
      }
      let lost: string[] = [];
      if (views) {
        lost = work.check(views).lost;
        f.acknowledgedLost += lost.length;
        for (const l of lost) f.violations.push(`${k}: acknowledged command lost: ${l}`);
        for (const v of views)
          for (const r of v.replicas)
            restarts.set(r.id, Math.max(restarts.get(r.id) ?? 0, r.restarts));
        // No replica id started twice (a restart by the replica machine counts as its own start):
        // the replicas whose logs changed since this point began.
        for (const [id, n] of replicaStarts([c.dataDir], pointStart - 1_000)) {
          if (n > 1 + (restarts.get(id) ?? 0) && !duplicates.has(id)) {
            duplicates.add(id);
            f.duplicateReplicas++;
            f.violations.push(
              `${k}: replica ${id} started ${n} times (restarts ${restarts.get(id) ?? 0})`,
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
              orphans = runReplicaProcesses(env!.runId)
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
          f.violations.push(`${k}: replica processes no actor owns: ${orphans.join(', ')}`);
        }
        // Each live replica has exactly one process.
        const procs = runReplicaProcesses(env.runId);
        for (const id of owned) {
          const n = procs.filter((p) => p.replicaId === id).length;
          if (n > 1 && !duplicates.has(id)) {
            duplicates.add(id);
            f.duplicateReplicas++;
            f.violations.push(`${k}: replica ${id} has ${n} processes`);
          }
        }
      }
      ctx.log(
        `  ${topology} ${k}/${ctx.runs}: API back in ${Math.round(back)} ms after restart, recovered ${Math.round(backAt - killedAt)} ms, ${conv.views ? `converged ${Math.round(converged.at(-1)!)} ms` : `NOT converged (${conv.why})`}, lost ${lost.length}`,
      );
      if (!conv.views) {
        // A fleet that did not settle makes every later convergence check meaningless.
        rebuilds.push(`${k}: fleet did not converge`);
        await retire();
      }
    }
    await traffic.stop();
    const last = env as Env | undefined;
    if (last) {
      done.acknowledged += last.work.acknowledged;
      done.unknown += last.work.unknown;
      done.refused += last.work.refused;
    }
    f.runs = points;
    const tot = traffic.totals();
    f.requestsSent = tot.sent;
    f.requestsFailed = tot.failed;
    const statuses: Record<string, number> = {};
    for (const w of windows) {
      const s = traffic.window(w.from, w.to);
      f.windowSent += s.sent;
      f.windowFailed += s.failed;
      for (const [key, v] of Object.entries(s.statuses)) statuses[key] = (statuses[key] ?? 0) + v;
    }
    // Failures outside the restart windows (rolling updates, scale-ins, drains, rebuilds).
    const outside = traffic.samples.filter(
      (s) => !s.ok && !windows.some((w) => s.start >= w.from && s.start < w.to),
    );
    f.commandsAcknowledged = done.acknowledged;
    f.notes.push(
      `kill points run: ${points} of ${ctx.runs} asked${points < ctx.runs ? ' (stopped by --max-min or a failed rebuild)' : ''}; environments: ${envs} (rebuilt after: ${rebuilds.join('; ') || 'none'})`,
      `traffic error rate in the restart windows (kill → API answers again): ${f.windowFailed} of ${f.windowSent} requests; failed answers by status (0 = connection error/timeout): ${JSON.stringify(statuses)}`,
      `failed requests outside the restart windows: ${outside.length} (statuses ${JSON.stringify(countBy(outside.map((s) => String(s.status))))})`,
      `commands: ${done.acknowledged} acknowledged, ${done.unknown} without an answer (effect checked either way), ${done.refused} refused or never sent`,
      `restarts that failed and were retried by the supervisor: ${startFailures.length}${startFailures.length ? ` (first: ${startFailures[0]})` : ''}`,
      `process start (spawn → listening, node startup included) p50 ${Math.round(percentile(startMs, 50))} ms, p99 ${Math.round(percentile(startMs, 99))} ms, max ${Math.round(Math.max(...startMs, 0))} ms`,
      `time to recover = kill → the restarted coordinator answers GET /v1/deployments: p50 ${Math.round(percentile(f.recoverMs, 50))} ms, p99 ${Math.round(percentile(f.recoverMs, 99))} ms; fleet converged (every deployment RUNNING, replicas and routes HEALTHY) p50 ${Math.round(percentile(converged, 50))} ms, p99 ${Math.round(percentile(converged, 99))} ms after the kill`,
      `fleet did not converge after ${f.runs - converged.length} of ${f.runs} points (${stalls.length} given up after ${STALL_MS / 1000} s without change); a rolling update left on the old revision (known open defect, counted as a violation): ${stuckRollouts.length} (kill points ${stuckRollouts.join(', ') || '–'})`,
    );
    return f;
  } finally {
    await traffic.stop();
    await retire();
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
    // The topologies run side by side; each keeps its own figures.
    return Promise.all((['all-in-one', 'separate'] as const).map((t) => runTopology(ctx, t)));
  },
};
