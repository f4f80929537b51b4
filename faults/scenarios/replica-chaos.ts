/**
 * Scenario 6: replica chaos under load. One all-in-one `serve`, a deployment of 3 echo
 * replicas, steady proxied traffic (plain completions: POST, so the proxy does not retry a
 * reset by itself) from two groups of closed-loop clients at once: one never retries, one
 * retries once at once on a 5xx, a connection error or a timeout. Faults, one at a time on a
 * seeded replica, each held for the fault window: kill -9, freeze (SIGSTOP longer than the
 * health timeout, then SIGCONT), slow (every /v1/ answer 2 s late: POST /admin/delay), 500s
 * (POST /admin/errors) and connection resets (POST /admin/reset). Reported per fault and client
 * group: error rate and p99 latency of the requests started in the fault window, against a
 * baseline window without a fault in the same run. Checked: after each fault the deployment is
 * back to 3 HEALTHY replicas, the serve process is alive, and no replica has two processes or
 * none that an actor owns.
 */
import {
  allInOne,
  ClientGroup,
  createDeployment,
  fmtMs,
  fmtPct,
  type Shot,
  settledView,
  sleep,
  type WindowStats,
  windowStats,
} from '../lib/chaos.ts';
import { settled } from '../lib/cluster.ts';
import type { Context, Scenario } from '../lib/context.ts';
import { emptyFigures, type Figures, percentile } from '../lib/figures.ts';
import { call, listDeployments, until } from '../lib/http.ts';
import { runReplicaProcesses } from '../lib/serve.ts';

const NAME = 'chaos';
const REPLICAS = 3;
const CLIENTS_PER_GROUP = 4;
const CLIENT_TIMEOUT_MS = 10_000;
const SLOW_MS = 2_000;

const FAULTS = ['kill -9', 'freeze (SIGSTOP)', `slow (+${SLOW_MS} ms)`, '500s', 'resets'] as const;
type Fault = (typeof FAULTS)[number];

function signalReplica(runId: string, replicaId: string, sig: NodeJS.Signals): number {
  const procs = runReplicaProcesses(runId).filter((p) => p.replicaId === replicaId);
  for (const p of procs) {
    try {
      process.kill(p.pid, sig);
    } catch {
      // gone
    }
  }
  return procs.length;
}

async function admin(endpoint: string, path: string, body: unknown): Promise<void> {
  const r = await call(endpoint, 'POST', path, body, 5_000);
  if (r.status !== 200) throw new Error(`${endpoint}${path}: ${r.status} ${r.error ?? ''}`);
}

/** Injects a fault on a replica; returns what undoes it (nothing for a kill). */
async function inject(
  fault: Fault,
  runId: string,
  replica: { id: string; endpoint: string },
): Promise<() => Promise<void>> {
  switch (fault) {
    case 'kill -9':
      if (signalReplica(runId, replica.id, 'SIGKILL') === 0)
        throw new Error(`no process for replica ${replica.id}`);
      return async () => {};
    case 'freeze (SIGSTOP)':
      if (signalReplica(runId, replica.id, 'SIGSTOP') === 0)
        throw new Error(`no process for replica ${replica.id}`);
      return async () => {
        signalReplica(runId, replica.id, 'SIGCONT');
      };
    case `slow (+${SLOW_MS} ms)`:
      await admin(replica.endpoint, '/admin/delay', { ms: SLOW_MS });
      return () => admin(replica.endpoint, '/admin/delay', { ms: 0 });
    case '500s':
      await admin(replica.endpoint, '/admin/errors', { status: 500 });
      return () => admin(replica.endpoint, '/admin/errors', { status: 0 });
    case 'resets':
      await admin(replica.endpoint, '/admin/reset', { on: true });
      return () => admin(replica.endpoint, '/admin/reset', { on: false });
  }
}

interface Window {
  fault: Fault | 'none (baseline)';
  from: number;
  to: number;
  /** Undoing the fault (kill: the kill) → the API shows every replica and route HEALTHY. */
  recoverMs: number;
  /** Undoing the fault (kill: the kill) → every replica answered a client through the proxy. */
  rotationMs: number;
}

function pooled(shots: readonly Shot[], ws: readonly Window[]): WindowStats {
  const inAny = shots.filter((s) => ws.some((w) => s.start >= w.from && s.start < w.to));
  return windowStats(inAny, Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY);
}

export const replicaChaos: Scenario = {
  name: 'replica-chaos',
  title: 'replica kill, freeze, slow, 500s, resets under load, with and without client retries',
  defaultRuns: { full: 2, quick: 1 },
  async run(ctx: Context): Promise<Figures[]> {
    const t0 = performance.now();
    const variant = `all-in-one, ${REPLICAS} replicas, ${CLIENTS_PER_GROUP} clients`;
    const plainF = emptyFigures('6. replica chaos', `${variant}, no retries`);
    const retryF = emptyFigures('6. replica chaos', `${variant}, retry once`);
    const rand = ctx.rand.fork('victims');
    const holdMs = Math.min(ctx.outageMs, 15_000);
    const bed = await allInOne(ctx, 'replica-chaos');
    const url = `${bed.proxy}/${NAME}/v1/completions`;
    const body = { prompt: 'replica chaos under load', max_tokens: 4 };
    const common = { url, body, timeoutMs: CLIENT_TIMEOUT_MS, pauseMs: 20 };
    const plain = new ClientGroup({ ...common, retryOnce: false });
    const retry = new ClientGroup({ ...common, retryOnce: true });
    const windows: Window[] = [];
    const violations: string[] = [];
    try {
      await createDeployment(bed.api, {
        name: NAME,
        model_path: 'examples/echo',
        replicas: REPLICAS,
        environ: { ECHO_TOKEN_LATENCY_MS: '0' },
        health_check: { interval_s: 0.5, timeout_s: 1, unhealthy_threshold: 2 },
      });
      await settledView(bed.api, NAME, 180_000);
      plain.grow(CLIENTS_PER_GROUP);
      retry.grow(CLIENTS_PER_GROUP);
      await until(
        () => plain.shots.some((s) => s.ok) && retry.shots.some((s) => s.ok),
        60_000,
        'both client groups served through the proxy',
      );
      {
        const from = performance.now();
        await sleep(holdMs);
        windows.push({
          fault: 'none (baseline)',
          from,
          to: performance.now(),
          recoverMs: 0,
          rotationMs: 0,
        });
      }
      for (let run = 0; run < ctx.runs; run++) {
        for (const fault of FAULTS) {
          const v = await settledView(bed.api, NAME, 120_000);
          const victim = rand.pick(v.replicas);
          if (!victim.endpoint) throw new Error(`replica ${victim.id} has no endpoint`);
          const from = performance.now();
          const undo = await inject(fault, bed.runId, { id: victim.id, endpoint: victim.endpoint });
          let to = 0;
          // A kill is undone by Flotilla itself, inside the window: watch for the victim's
          // restart (its count grows) and the fleet settled again, so the recovery is measured
          // from the kill rather than from the window's end.
          const killRecovered =
            fault === 'kill -9' ? watchRestart(bed.api, victim.id, victim.restarts, holdMs) : null;
          try {
            await sleep(holdMs);
            to = performance.now();
          } finally {
            await undo().catch((err: Error) =>
              violations.push(`run ${run + 1}, ${fault}: undoing it failed: ${err.message}`),
            );
          }
          const undoneAt = fault === 'kill -9' ? from : performance.now();
          let recoverMs = Number.NaN;
          let rotationMs = Number.NaN;
          try {
            const back = await settledView(bed.api, NAME, 120_000);
            recoverMs = ((await killRecovered) ?? performance.now()) - undoneAt;
            // Back in the proxy's rotation (an ejection by outlier detection outlives the
            // fault): every replica answers a client again before the next fault.
            const ids = back.replicas.map((r) => r.id);
            const served = (id: string) =>
              [plain, retry].some((g) =>
                g.shots.some((s) => s.ok && s.replica === id && s.start >= undoneAt),
              );
            await until(() => ids.every(served), 120_000, 'every replica serves again', 50);
            // The first answer of each replica since the fault was undone (for a kill, the
            // restarted replica may have served before the window ended).
            const firstServed = (id: string) =>
              Math.min(
                ...[plain, retry].flatMap((g) =>
                  g.shots
                    .filter((s) => s.ok && s.replica === id && s.start >= undoneAt)
                    .map((s) => s.end),
                ),
              );
            rotationMs =
              (killRecovered ? Math.max(...ids.map(firstServed)) : performance.now()) - undoneAt;
          } catch (err) {
            violations.push(`run ${run + 1}, ${fault}: ${(err as Error).message}`);
          }
          windows.push({ fault, from, to, recoverMs, rotationMs });
          // The window's requests are all answered before the next fault (a request held by
          // a slow replica must not meet the next fault's toggle).
          await until(
            () => plain.nothingFrom(to) && retry.nothingFrom(to),
            CLIENT_TIMEOUT_MS * 3,
            'the requests of the fault window answered',
          );
          const a = windowStats(plain.shots, from, to);
          const b = windowStats(retry.shots, from, to);
          ctx.log(
            `  run ${run + 1} ${fault} on ${victim.id}: no retries ${a.failed}/${a.sent} failed, p99 ${fmtMs(a.p99)}; retry once ${b.failed}/${b.sent} failed, p99 ${fmtMs(b.p99)}; settled ${fmtMs(recoverMs)}, every replica serving ${fmtMs(rotationMs)} after ${fault === 'kill -9' ? 'the kill' : 'undoing it'}`,
          );
        }
      }
      // No replica with two processes, none that no actor owns.
      const views = (await listDeployments(bed.api)) ?? [];
      const owned = new Set(views.flatMap((d) => d.replicas.map((r) => r.id)));
      let procs = runReplicaProcesses(bed.runId);
      await until(
        () => {
          procs = runReplicaProcesses(bed.runId);
          return procs.every((p) => owned.has(p.replicaId));
        },
        10_000,
        'no orphan replica',
        200,
      ).catch(() => {});
      for (const p of procs) {
        if (!owned.has(p.replicaId)) {
          plainF.orphanReplicas++;
          violations.push(`replica process no actor owns: ${p.replicaId} (pid ${p.pid})`);
        }
      }
      for (const id of owned) {
        if (procs.filter((p) => p.replicaId === id).length > 1) {
          plainF.duplicateReplicas++;
          violations.push(`replica ${id} has several processes`);
        }
      }
      if (!bed.serve.alive)
        violations.push(`serve exited (${bed.serve.exitCode ?? bed.serve.exitSignal})`);
    } finally {
      await Promise.all([plain.stop(), retry.stop()]);
      await bed.close();
    }
    // Figures: one row per client group, the per-fault table under the first.
    const faultWs = windows.filter((w) => w.fault !== 'none (baseline)');
    const base = windows.filter((w) => w.fault === 'none (baseline)');
    const rows: string[] = [
      `Per fault (requests started in the ${holdMs / 1000} s fault window${ctx.runs > 1 ? `s, ${ctx.runs} runs pooled` : ''}; the machine's load is in the run line above):`,
      '',
      '| fault | no retries: failed / sent | error rate | p99 | retry once: failed / sent | error rate | p99 | retried | HEALTHY again | all serving again |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ];
    for (const fault of ['none (baseline)', ...FAULTS] as const) {
      const ws = windows.filter((w) => w.fault === fault);
      if (ws.length === 0) continue;
      const a = pooled(plain.shots, ws);
      const b = pooled(retry.shots, ws);
      const rec = ws.map((w) => w.recoverMs).filter((x) => !Number.isNaN(x));
      const rot = ws.map((w) => w.rotationMs).filter((x) => !Number.isNaN(x));
      const maxOf = (xs: number[]) => (xs.length ? fmtMs(Math.max(...xs)) : 'no');
      rows.push(
        `| ${fault} | ${a.failed} / ${a.sent} | ${fmtPct(a.failed, a.sent)} | ${fmtMs(a.p99)} | ${b.failed} / ${b.sent} | ${fmtPct(b.failed, b.sent)} | ${fmtMs(b.p99)} | ${b.retried} | ${fault === 'none (baseline)' ? '–' : maxOf(rec)} | ${fault === 'none (baseline)' ? '–' : maxOf(rot)} |`,
      );
    }
    const failuresBy = (shots: readonly Shot[]) =>
      FAULTS.map((fault) => {
        const ws = faultWs.filter((w) => w.fault === fault);
        return `${fault} ${JSON.stringify(pooled(shots, ws).failures)}`;
      }).join('; ');
    for (const [f, g, label] of [
      [plainF, plain, 'no retries'],
      [retryF, retry, 'retry once'],
    ] as const) {
      f.runs = ctx.runs;
      f.faultsInjected = faultWs.length;
      f.requestsSent = g.shots.length;
      f.requestsFailed = g.shots.filter((s) => !s.ok).length;
      const w = pooled(g.shots, faultWs);
      f.windowSent = w.sent;
      f.windowFailed = w.failed;
      f.recoverMs = faultWs.map((x) => x.rotationMs).filter((x) => !Number.isNaN(x));
      const bs = pooled(g.shots, base);
      f.notes.push(
        `clients: ${CLIENTS_PER_GROUP} closed-loop, POST /${NAME}/v1/completions through the proxy, ${CLIENT_TIMEOUT_MS / 1000} s timeout, ${label === 'retry once' ? 'one immediate retry on a 5xx, connection error or timeout' : 'no retry'}; the other group ran at the same time`,
        `baseline (no fault, ${holdMs / 1000} s): ${bs.failed} of ${bs.sent} failed, p99 ${fmtMs(bs.p99)}; in fault windows: p99 ${fmtMs(w.p99)} (${(w.p99 / bs.p99).toFixed(1)}× baseline)`,
        `failures in fault windows by status and code (0 = connection error/timeout): ${failuresBy(g.shots)}`,
        `time to recover = undoing the fault (kill: the kill) → every replica answers clients through the proxy again (after the API shows ${REPLICAS} HEALTHY replicas and routes): p50 ${fmtMs(percentile(f.recoverMs, 50))}; the per-fault table gives both (max over runs)`,
      );
    }
    plainF.tables = rows;
    plainF.violations = violations;
    plainF.durationMs = retryF.durationMs = performance.now() - t0;
    return [plainF, retryF];
  },
};

/**
 * Polls the API during a kill's window: the moment the killed replica's restart count has grown
 * and the deployment is settled again (every replica and route HEALTHY), or null when that did
 * not happen within the window (the caller then measures after the window).
 */
async function watchRestart(
  api: string,
  replicaId: string,
  restartsBefore: number,
  windowMs: number,
): Promise<number | null> {
  const end = performance.now() + windowMs;
  while (performance.now() < end) {
    const v = (await listDeployments(api, 2_000).catch(() => null))?.find((d) => d.name === NAME);
    const victim = v?.replicas.find((r) => r.id === replicaId);
    if (v && victim && victim.restarts > restartsBefore && settled(v)) return performance.now();
    await sleep(100);
  }
  return null;
}
