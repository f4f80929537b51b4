/**
 * bench/autoscale: the autoscaler and scale to zero against real echo replicas (processes),
 * the in-process proxy and an embedded store. Once per metric named on the command line
 * (default `concurrency,requests,cpu`), one deployment goes through a load ramp:
 *
 *   idle -> step to high concurrency + plateau -> drop to low concurrency -> idle until it is
 *   at zero -> one request through the proxy (activation)
 *
 * recording target/HEALTHY replicas, client concurrency, p50/p99 latency and rejections every
 * sample. It prints, per metric: time from the load step to the first new replica serving,
 * peak overshoot (peak target during plateau and drop minus the target the plateau settled
 * on), flaps (direction changes of the target during the plateau), time to scale to zero
 * (from the end of the load), and activation overhead: the first response through the proxy
 * at zero minus a direct start of the same replica command in the same run (spawn, poll its
 * /health every 10 ms, same request). It writes docs/autoscale-<metric>.svg.
 *
 * A metric this build's policy schema does not accept is skipped with a message; one that is
 * accepted but produced no scale-up during the plateau is flagged in the summary.
 *
 *   npm run bench:autoscale                      (concurrency,requests,cpu)
 *   npm run bench:autoscale -- inflight          (the metric on main)
 * Environment (seconds unless said): BENCH_AUTOSCALE_IDLE_S=5, _PLATEAU_S=60, _DROP_S=20,
 * _ZERO_AFTER_S=10 (scale_to_zero_after_s), _ZERO_MAX_S=90, _COOLDOWN_S=5, _CONCURRENCY=12,
 * _LOW_CONCURRENCY=2, _TOKEN_MS=20 (echo delay per token; 5 tokens a request), _MAX_REPLICAS=6,
 * _SAMPLE_MS=250, _CPU_MS=10 (cpu only: CPU milliseconds each request spins in the echo replica,
 * ECHO_CPU_MS_PER_REQUEST; the other metrics' replicas only sleep), _OUT_DIR=docs. Needs `npm run build` (replicas run bin/flotilla.js).
 * Load goes to 127.0.0.1 only and stops by itself.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { scalingPolicySchema } from '../../src/domain/deployment-request.ts';
import { createFlotilla, type Flotilla } from '../../src/index.ts';
import { renderChart, type Sample } from './chart.ts';

const REPO = resolve(fileURLToPath(new URL('../../', import.meta.url)));
const env = (k: string, d: number) => {
  const v = process.env[`BENCH_AUTOSCALE_${k}`];
  const n = v === undefined ? d : Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`BENCH_AUTOSCALE_${k}: expected a number`);
  return n;
};
const IDLE_S = env('IDLE_S', 5);
const PLATEAU_S = env('PLATEAU_S', 60);
const DROP_S = env('DROP_S', 20);
const ZERO_AFTER_S = env('ZERO_AFTER_S', 10);
const ZERO_MAX_S = env('ZERO_MAX_S', 90);
const COOLDOWN_S = env('COOLDOWN_S', 5);
const HIGH = env('CONCURRENCY', 12);
const LOW = env('LOW_CONCURRENCY', 2);
const TOKEN_MS = env('TOKEN_MS', 20);
const MAX_REPLICAS = env('MAX_REPLICAS', 6);
const SAMPLE_MS = env('SAMPLE_MS', 250);
const CPU_MS = env('CPU_MS', 10);
const OUT_DIR = resolve(REPO, process.env.BENCH_AUTOSCALE_OUT_DIR ?? 'docs');
const METRICS = (process.argv[2] ?? 'concurrency,requests,cpu')
  .split(',')
  .map((m) => m.trim())
  .filter(Boolean);

/**
 * Per-metric replica environment. Echo replicas that only sleep through their token delay burn
 * a few percent of a core at most, so a `cpu` policy never sees its threshold: for `cpu` each
 * request also spins CPU_MS on the replica's event loop, so utilization follows the load.
 */
const replicaEnv = (metric: string): Record<string, string> => ({
  ECHO_TOKEN_LATENCY_MS: String(TOKEN_MS),
  ...(metric === 'cpu' ? { ECHO_CPU_MS_PER_REQUEST: String(CPU_MS) } : {}),
});

/** Per-metric policy: thresholds in the metric's own unit (per replica). */
const POLICIES: Record<string, Record<string, number | string>> = {
  inflight: { scale_up_threshold: 3.5, scale_down_threshold: 1 },
  concurrency: { target_value: 3 },
  requests: { target_value: 20, scale_up_threshold: 25, scale_down_threshold: 5 },
  latency: { target_value: 150, scale_up_threshold: 200, scale_down_threshold: 120 },
  cpu: { target_value: 70, scale_up_threshold: 80, scale_down_threshold: 30 },
  memory: { target_value: 70, scale_up_threshold: 80, scale_down_threshold: 30 },
};

const BODY = JSON.stringify({
  model: 'echo',
  messages: [{ role: 'user', content: 'one two three four five' }],
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function quantile(xs: number[], q: number): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => res(port));
    });
  });
}

const agent = new Agent({ connections: 256, keepAliveTimeout: 10_000 });

async function chat(url: string): Promise<{ status: number; replica: string | null; ms: number }> {
  const t0 = performance.now();
  try {
    const r = await request(url, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json' },
      body: BODY,
    });
    await r.body.text();
    const rep = r.headers['x-flotilla-replica'];
    return {
      status: r.statusCode,
      replica: typeof rep === 'string' ? rep : null,
      ms: performance.now() - t0,
    };
  } catch {
    return { status: 0, replica: null, ms: performance.now() - t0 };
  }
}

/** Spawns the deployment's command by hand and times spawn -> first 200 on the same request. */
async function directStart(metric: string): Promise<number> {
  const port = await freePort();
  const t0 = performance.now();
  const child: ChildProcess = spawn(
    process.execPath,
    ['../../bin/flotilla.js', 'echo-server', '--port', String(port)],
    {
      cwd: join(REPO, 'examples/echo'),
      env: { ...process.env, ...replicaEnv(metric), PORT: String(port) },
      stdio: 'ignore',
      // As the process backend starts replicas: in a session of their own (on Linux that is
      // also a scheduler autogroup of their own, which matters on a loaded machine).
      detached: true,
    },
  );
  try {
    const base = `http://127.0.0.1:${port}`;
    const deadline = t0 + 60_000;
    for (;;) {
      if (performance.now() > deadline) throw new Error('direct start: no /health 200 in 60 s');
      const ok = await request(`${base}/health`, { dispatcher: agent })
        .then(async (r) => {
          await r.body.text();
          return r.statusCode === 200;
        })
        .catch(() => false);
      if (ok) break;
      await sleep(10);
    }
    const r = await chat(`${base}/v1/chat/completions`);
    if (r.status !== 200) throw new Error(`direct start: first request answered ${r.status}`);
    return performance.now() - t0;
  } finally {
    child.kill('SIGKILL');
  }
}

interface Done {
  at: number;
  status: number;
  ms: number;
  replica: string | null;
}

interface Summary {
  metric: string;
  skipped?: string;
  stepToNewReplicaS?: number | null;
  settled?: number;
  peak?: number;
  overshoot?: number;
  flaps?: number;
  rejectedPlateau?: number;
  requests?: number;
  toZeroS?: number | null;
  activationMs?: number | null;
  /** Mean of a direct start just before and one just after the activation; their range. */
  directMs?: number;
  directRangeMs?: number[];
  overheadMs?: number | null;
  scaledUp?: boolean;
}

async function runMetric(f: Flotilla, metric: string): Promise<Summary> {
  const policy = { target_metric: metric, ...(POLICIES[metric] ?? {}) };
  const accepted = scalingPolicySchema.safeParse(policy);
  if (!accepted.success) {
    return {
      metric,
      skipped: `target_metric "${metric}" is not implemented in this build (${accepted.error.issues[0]?.message ?? 'refused'})`,
    };
  }
  const name = `bench-${metric}`;
  try {
    await f.deploy({
      name,
      model_path: 'examples/echo',
      replicas: 1,
      min_replicas: 0,
      max_replicas: MAX_REPLICAS,
      scaling_policy: {
        ...accepted.data,
        min_replicas: 0,
        max_replicas: MAX_REPLICAS,
        cooldown_period: COOLDOWN_S,
        scale_to_zero_after_s: ZERO_AFTER_S,
      },
      // Probed often so activation is not dominated by the probe interval; tolerant of a
      // slow check or two on a loaded machine.
      health_check: { interval_s: 0.1, timeout_s: 0.1, unhealthy_threshold: 5 },
      environ: replicaEnv(metric),
    } as Parameters<Flotilla['deploy']>[0]);
  } catch (err) {
    return { metric, skipped: `deploy refused: ${(err as Error).message}` };
  }
  const url = `${f.proxyUrl}/${name}/v1/chat/completions`;
  let t0 = performance.now();
  const now = () => (performance.now() - t0) / 1000;
  const view = () => f.get(name);
  for (const deadline = Date.now() + 60_000; ; ) {
    const v = await view();
    if (v.state === 'RUNNING' && v.healthy_replicas >= 1) break;
    if (Date.now() > deadline) throw new Error(`${name} not RUNNING in 60 s (${v.state})`);
    await sleep(100);
  }
  // Warm-up request: the idle clock starts now, not at creation; so does the chart.
  await chat(url);
  t0 = performance.now();

  let phase = 'idle';
  let desired = 0;
  let open = 0;
  let stopped = false;
  const done: Done[] = [];
  const samples: Sample[] = [];
  const workers = Array.from({ length: HIGH }, async (_, i) => {
    while (!stopped) {
      if (i >= desired) {
        await sleep(20);
        continue;
      }
      open++;
      const r = await chat(url);
      open--;
      done.push({ at: now(), status: r.status, ms: r.ms, replica: r.replica });
    }
  });
  let sampled = 0;
  const sampler = (async () => {
    while (!stopped) {
      const v = await view();
      const t = now();
      const window = done.slice(sampled);
      sampled = done.length;
      const ok = window.filter((d) => d.status === 200).map((d) => d.ms);
      samples.push({
        t,
        phase,
        target: v.target_replicas,
        healthy: v.healthy_replicas,
        load: open,
        p50: quantile(ok, 0.5),
        p99: quantile(ok, 0.99),
        rejected: window.length - ok.length,
      });
      await sleep(SAMPLE_MS);
    }
  })();

  await sleep(IDLE_S * 1000);
  // Step.
  const before = new Set(
    (await view()).replicas.filter((r) => r.state === 'HEALTHY').map((r) => r.id),
  );
  const stepAt = now();
  phase = 'plateau';
  desired = HIGH;
  await sleep(PLATEAU_S * 1000);
  const plateauEnd = now();
  phase = 'drop';
  desired = LOW;
  await sleep(DROP_S * 1000);
  const loadEnd = now();
  phase = 'to-zero';
  desired = 0;
  let zeroAt: number | null = null;
  for (const deadline = Date.now() + ZERO_MAX_S * 1000; Date.now() < deadline; ) {
    const v = await view();
    if (v.target_replicas === 0 && v.current_replicas === 0) {
      zeroAt = now();
      break;
    }
    await sleep(100);
  }
  // Activation overhead: a direct start of the same command, then the first request at zero.
  let directMs = Number.NaN;
  let directRange: [number, number] = [Number.NaN, Number.NaN];
  let activationMs: number | null = null;
  if (zeroAt !== null) {
    phase = 'activation';
    // Direct starts just before and just after the activation: the machine's load drifts.
    const directBefore = await directStart(metric);
    const still = await view();
    if (still.target_replicas !== 0 || still.current_replicas !== 0) {
      console.log(
        `  note: not at zero when the activation request was sent (target ${still.target_replicas}, ${still.current_replicas} replicas)`,
      );
    }
    const r = await chat(url);
    done.push({ at: now(), status: r.status, ms: r.ms, replica: r.replica });
    activationMs = r.status === 200 ? r.ms : null;
    const directAfter = await directStart(metric);
    directMs = (directBefore + directAfter) / 2;
    directRange = [directBefore, directAfter];
    await sleep(1_000);
  }
  stopped = true;
  await Promise.all(workers);
  await sampler;
  await f.destroy(name).catch(() => {});

  const firstNew = done.find(
    (d) =>
      d.at >= stepAt &&
      d.at <= loadEnd &&
      d.status === 200 &&
      d.replica !== null &&
      !before.has(d.replica),
  );
  const plateau = samples.filter((s) => s.t >= stepAt && s.t <= plateauEnd);
  const settled = plateau.at(-1)?.target ?? 0;
  const peak = Math.max(
    0,
    ...samples.filter((s) => s.t >= stepAt && s.t <= loadEnd).map((s) => s.target),
  );
  let flaps = 0;
  let lastDir = 0;
  for (let i = 1; i < plateau.length; i++) {
    const d = Math.sign(plateau[i]!.target - plateau[i - 1]!.target);
    if (d !== 0) {
      if (lastDir !== 0 && d !== lastDir) flaps++;
      lastDir = d;
    }
  }
  const inPlateau = done.filter((d) => d.at >= stepAt && d.at <= plateauEnd);
  const summary: Summary = {
    metric,
    stepToNewReplicaS: firstNew ? firstNew.at - stepAt : null,
    settled,
    peak,
    overshoot: peak - settled,
    flaps,
    rejectedPlateau: inPlateau.filter((d) => d.status !== 200).length,
    requests: done.length,
    toZeroS: zeroAt === null ? null : zeroAt - loadEnd,
    activationMs,
    directMs,
    directRangeMs: directRange.map((v) => Math.round(v)),
    overheadMs: activationMs === null ? null : activationMs - directMs,
    scaledUp: peak > 1,
  };
  mkdirSync(OUT_DIR, { recursive: true });
  const file = join(OUT_DIR, `autoscale-${metric}.svg`);
  const fmt = (v: number | null | undefined, unit: string, d = 1) =>
    v === null || v === undefined || Number.isNaN(v) ? 'n/a' : `${v.toFixed(d)} ${unit}`;
  writeFileSync(
    file,
    renderChart({
      title: `bench/autoscale: target_metric ${metric} (${HIGH} concurrent, plateau ${PLATEAU_S} s, cooldown ${COOLDOWN_S} s, to zero after ${ZERO_AFTER_S} s idle)`,
      samples,
      notes: [
        `step -> first new replica serving ${fmt(summary.stepToNewReplicaS, 's')}; peak ${peak}, settled ${settled}, overshoot ${summary.overshoot}; flaps ${flaps}; rejections in plateau ${summary.rejectedPlateau}/${inPlateau.length}`,
        `end of load -> zero replicas ${fmt(summary.toZeroS, 's')}; activation ${fmt(activationMs, 'ms', 0)} vs direct start ${fmt(directMs, 'ms', 0)} (mean of ${directRange.map((v) => v.toFixed(0)).join(' ms before and ')} ms after; overhead ${fmt(summary.overheadMs, 'ms', 0)})`,
        `echo replicas (processes), ${TOKEN_MS} ms per token x 5 tokens${metric === 'cpu' ? ` + ${CPU_MS} ms CPU spin per request` : ''}; shared 2-core machine under other load`,
      ],
    }),
  );
  console.log(`  chart: ${file}`);
  return summary;
}

async function main() {
  console.log(
    `bench/autoscale: metrics ${METRICS.join(', ')}; idle ${IDLE_S} s, plateau ${PLATEAU_S} s at ${HIGH}, drop ${DROP_S} s at ${LOW}, cooldown ${COOLDOWN_S} s, zero after ${ZERO_AFTER_S} s`,
  );
  const f = await createFlotilla({
    dataDir: mkdtempSync(join(tmpdir(), 'flotilla-bench-autoscale-')),
    modelRoots: [REPO],
    runtime: {
      scalingIntervalS: 1,
      scaleToZeroIntervalS: 0.5,
      healthCheckIntervalS: 0.5,
    },
  });
  const results: Summary[] = [];
  try {
    for (const m of METRICS) {
      console.log(`- ${m}`);
      const s = await runMetric(f, m);
      if (s.skipped) console.log(`  SKIPPED: ${s.skipped}`);
      else {
        if (!s.scaledUp) {
          console.log(
            `  NO SCALE-UP: target_metric ${m} made no decision during the plateau (is it measured in this build?)`,
          );
        }
        console.log(`  ${JSON.stringify(s)}`);
      }
      results.push(s);
    }
  } finally {
    await f.close();
    await agent.close();
  }
  console.log(
    '\nmetric       step->new(s) peak settled overshoot flaps rej(plateau) ->zero(s) activation(ms) direct(ms) overhead(ms)',
  );
  for (const s of results) {
    if (s.skipped) {
      console.log(`${s.metric.padEnd(12)} skipped: ${s.skipped}`);
      continue;
    }
    const n = (v: number | null | undefined, d = 1) =>
      v === null || v === undefined || Number.isNaN(v) ? 'n/a' : v.toFixed(d);
    console.log(
      [
        s.metric.padEnd(12),
        n(s.stepToNewReplicaS).padStart(12),
        String(s.peak).padStart(4),
        String(s.settled).padStart(7),
        String(s.overshoot).padStart(9),
        String(s.flaps).padStart(5),
        String(s.rejectedPlateau).padStart(12),
        n(s.toZeroS).padStart(9),
        n(s.activationMs, 0).padStart(14),
        n(s.directMs, 0).padStart(10),
        n(s.overheadMs, 0).padStart(12),
      ].join(' '),
    );
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
