/**
 * Scenario 7: overload. One all-in-one `serve` (its proxy in-process, one proxy worker), a slow
 * deployment (2 echo replicas, 500 ms per token, 4 tokens: 2 s per request) with small
 * admission limits (20 in flight per replica, a queue of 160, graduated rejection from 70 %,
 * the whole queue open to ordinary requests), and closed-loop clients in steps up to 500 at
 * once. A client sends again as soon as it is answered, and 1 s after a 503 (the proxy's
 * Retry-After). A separate process samples `/health` of the proxy port and of the API port
 * every 100 ms (fresh connections); the suite samples the serve process's RSS from /proc.
 *
 * Reported per step: the share of requests rejected (503 `overloaded`) against the documented
 * graduated formula (docs/health-and-degradation.md: below 70 % of the admission room nothing is
 * rejected, between 70 % and 100 % a request is rejected with probability (load − 0.7) / 0.3,
 * at 100 % every one; a request that finds a free slot and an empty queue always runs),
 * evaluated two ways: at the offered load (clients / admission room, as if every client were
 * inside) and at the load the proxy reported in the sampled `/health` answers (what an arriving
 * request meets). Checked: `/health` p99 below 50 ms during the overload; no rejection while
 * the clients fit in the slots; every rejection made at a load ≥ 0.7 (its `x-flotilla-load`);
 * the serve process alive.
 */
import { spawn } from 'node:child_process';
import {
  allInOne,
  ClientGroup,
  createDeployment,
  fmtMs,
  rss,
  settledView,
  sleep,
} from '../lib/chaos.ts';
import type { Context, Scenario } from '../lib/context.ts';
import { emptyFigures, type Figures, percentile } from '../lib/figures.ts';
import { until } from '../lib/http.ts';

const NAME = 'slow';
const REPLICAS = 2;
const PER_REPLICA = 20;
const QUEUE = 160;
const THRESHOLD = 0.7;
const TOKEN_MS = 500;
const TOKENS = 4;
const HEALTH_P99_MAX_MS = 50;
const STEPS_FULL = [25, 50, 100, 150, 175, 200, 250, 350, 500];
const STEPS_QUICK = [25, 100, 175, 250, 500];

/** The documented graduated rejection probability at `load`. */
export function documentedRejection(load: number): number {
  if (load >= 1) return 1;
  if (load < THRESHOLD) return 0;
  return (load - THRESHOLD) / (1 - THRESHOLD);
}

/** A separate process sampling GET /health of the proxy and API ports (fresh connections). */
const SAMPLER = `
const http = require('node:http');
const [proxy, api] = process.argv.slice(1);
let stop = false;
process.on('SIGTERM', () => { stop = true; });
function get(base) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = http.get(base + '/health', { agent: false, timeout: 5000 }, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => {
        let load = null;
        try {
          const l = JSON.parse(b).load;
          if (l) load = { level: l.level, inflight: l.inflight, queued: l.queued, capacity: l.capacity };
        } catch {}
        resolve({ ms: performance.now() - t0, status: res.statusCode, load });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ ms: performance.now() - t0, status: 0, load: null }));
  });
}
(async () => {
  while (!stop) {
    for (const [who, base] of [['proxy', proxy], ['api', api]]) {
      const t = Date.now();
      const r = await get(base);
      process.stdout.write(JSON.stringify({ t, who, ...r }) + '\\n');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  process.exit(0);
})();
`;

interface HealthSample {
  /** performance.now() of the suite. */
  t: number;
  who: 'proxy' | 'api';
  ms: number;
  status: number;
  load: { level: string; inflight: number; queued: number; capacity: number } | null;
}

function startSampler(proxy: string, api: string) {
  const samples: HealthSample[] = [];
  const offset = Date.now() - performance.now();
  const child = spawn(process.execPath, ['-e', SAMPLER, proxy, api], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    for (const p of parts) {
      try {
        const s = JSON.parse(p) as Omit<HealthSample, 't'> & { t: number };
        samples.push({ ...s, t: s.t - offset });
      } catch {
        // partial line
      }
    }
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    samples,
    stop: async () => {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

interface Step {
  clients: number;
  from: number;
  to: number;
  sent: number;
  rejected: number;
  otherFailed: number;
  served: number;
  measured: number;
  atOffered: number;
  atSampled: number;
  sampledLoad: number;
  rejectLoad: number;
  rssMax: number;
  healthP99: { proxy: number; api: number };
}

function chart(steps: readonly Step[], title: string): string {
  const W = 720;
  const H = 400;
  const L = 60;
  const R = 200;
  const T = 40;
  const B = 50;
  const xMax = Math.max(...steps.map((s) => s.clients));
  const x = (v: number) => L + (v / xMax) * (W - L - R);
  const y = (v: number) => T + (1 - v) * (H - T - B);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const series: Array<[string, string, (s: Step) => number, string]> = [
    ['measured', '#d62728', (s) => s.measured, ''],
    ['formula at sampled load', '#1f77b4', (s) => s.atSampled, '6 3'],
    ['formula at offered load', '#7f7f7f', (s) => s.atOffered, '2 3'],
  ];
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11" role="img">`,
    `<title>${esc(title)}</title>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${L}" y="20" font-size="13">${esc(title)}</text>`,
  ];
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    out.push(
      `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`,
      `<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`,
    );
  }
  for (const s of steps) {
    out.push(
      `<line x1="${x(s.clients)}" x2="${x(s.clients)}" y1="${y(0)}" y2="${y(0) + 4}" stroke="#333"/>`,
      `<text x="${x(s.clients)}" y="${y(0) + 16}" text-anchor="middle">${s.clients}</text>`,
    );
  }
  out.push(
    `<line x1="${L}" x2="${W - R}" y1="${y(0)}" y2="${y(0)}" stroke="#333"/>`,
    `<line x1="${L}" x2="${L}" y1="${y(0)}" y2="${y(1)}" stroke="#333"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">concurrent clients (offered concurrency)</text>`,
    `<text x="14" y="${(T + H - B) / 2}" transform="rotate(-90 14 ${(T + H - B) / 2})" text-anchor="middle">share of requests rejected</text>`,
  );
  series.forEach(([label, color, f, dash], i) => {
    const pts = steps.map((s) => `${x(s.clients).toFixed(1)},${y(f(s)).toFixed(1)}`).join(' ');
    out.push(
      `<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`,
      ...steps.map(
        (s) =>
          `<circle cx="${x(s.clients).toFixed(1)}" cy="${y(f(s)).toFixed(1)}" r="3" fill="${color}"/>`,
      ),
      `<line x1="${W - R + 15}" x2="${W - R + 40}" y1="${T + 10 + i * 18}" y2="${T + 10 + i * 18}" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`,
      `<text x="${W - R + 45}" y="${T + 14 + i * 18}">${esc(label)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

export const overload: Scenario = {
  name: 'overload',
  title: '500 concurrent clients on a slow deployment: RSS, /health p99, graduated rejection',
  defaultRuns: { full: 1, quick: 1 },
  async run(ctx: Context): Promise<Figures[]> {
    const t0 = performance.now();
    const capacity = REPLICAS * PER_REPLICA;
    const room = capacity + QUEUE;
    const f = emptyFigures(
      '7. overload',
      `all-in-one, ${REPLICAS} replicas × ${PER_REPLICA} slots + queue ${QUEUE}, ${(TOKEN_MS * TOKENS) / 1000} s per request`,
    );
    const stepsN = ctx.quick ? STEPS_QUICK : STEPS_FULL;
    const warmMs = ctx.quick ? 3_000 : 5_000;
    const measureMs = ctx.quick ? 6_000 : 20_000;
    const bed = await allInOne(ctx, 'overload');
    const clients = new ClientGroup({
      url: `${bed.proxy}/${NAME}/v1/completions`,
      body: { prompt: 'w x y z', max_tokens: TOKENS },
      retryOnce: false,
      timeoutMs: 90_000,
      pauseMs: 0,
      failPauseMs: 1_000,
    });
    let sampler: ReturnType<typeof startSampler> | undefined;
    const mem: Array<{ t: number; rss: number }> = [];
    let memTimer: NodeJS.Timeout | undefined;
    const steps: Step[] = [];
    let idle = { proxy: Number.NaN, api: Number.NaN, rss: 0 };
    let hwm = 0;
    let loadFrom = 0;
    let loadTo = 0;
    try {
      await createDeployment(bed.api, {
        name: NAME,
        model_path: 'examples/echo',
        replicas: REPLICAS,
        environ: { ECHO_TOKEN_LATENCY_MS: String(TOKEN_MS) },
        health_check: { interval_s: 0.5, timeout_s: 1, unhealthy_threshold: 2 },
        admission: {
          max_concurrent_requests: PER_REPLICA,
          max_queue_size: QUEUE,
          rejection_threshold: THRESHOLD,
          queue_rejection_threshold: 1,
          queue_timeout_s: 60,
          request_timeout_s: 80,
        },
      });
      await settledView(bed.api, NAME, 180_000);
      const pid = bed.serve.pid!;
      memTimer = setInterval(() => {
        const r = rss(pid);
        if (r) mem.push({ t: performance.now(), rss: r.rss });
      }, 250);
      sampler = startSampler(bed.proxy, bed.api);
      // Idle baseline: /health with no load, same run.
      const idleFrom = performance.now();
      await sleep(5_000);
      const idleS = sampler.samples.filter((s) => s.t >= idleFrom);
      idle = {
        proxy: percentile(
          idleS.filter((s) => s.who === 'proxy').map((s) => s.ms),
          99,
        ),
        api: percentile(
          idleS.filter((s) => s.who === 'api').map((s) => s.ms),
          99,
        ),
        rss: Math.max(0, ...mem.filter((m) => m.t >= idleFrom).map((m) => m.rss)),
      };
      loadFrom = performance.now();
      const windows: Array<{ n: number; from: number; to: number }> = [];
      for (const n of stepsN) {
        clients.grow(n);
        await sleep(warmMs);
        const from = performance.now();
        await sleep(measureMs);
        windows.push({ n, from, to: performance.now() });
        ctx.log(`  ${n} clients: step measured`);
      }
      loadTo = performance.now();
      // No new request from here; those in flight or queued are answered (and recorded).
      const stopping = clients.stop();
      const stoppedAt = performance.now();
      // Recovered: the proxy reports nothing in flight or queued and a healthy level.
      try {
        await until(
          () =>
            sampler!.samples.some(
              (s) =>
                s.t > stoppedAt &&
                s.who === 'proxy' &&
                s.load?.level === 'healthy' &&
                s.load.inflight === 0 &&
                s.load.queued === 0,
            ),
          120_000,
          'proxy load back to healthy after the clients stopped',
        );
        f.recoverMs.push(performance.now() - stoppedAt);
      } catch (err) {
        f.violations.push((err as Error).message);
      }
      await stopping;
      // Each step's requests by their start, now that every one of them was answered.
      for (const { n, from, to } of windows) {
        const shots = clients.shots.filter((s) => s.start >= from && s.start < to);
        const rejected = shots.filter((s) => s.status === 503 && s.code === 'overloaded');
        const hs = sampler.samples.filter((s) => s.t >= from && s.t < to);
        const loads = hs.flatMap((s) => (s.who === 'proxy' && s.load ? [s.load] : []));
        const expected = loads.map((l) =>
          l.inflight < l.capacity && l.queued === 0
            ? 0
            : documentedRejection((l.inflight + l.queued) / (l.capacity + QUEUE)),
        );
        const mean = (xs: number[]) =>
          xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN;
        const step: Step = {
          clients: n,
          from,
          to,
          sent: shots.length,
          rejected: rejected.length,
          otherFailed: shots.filter((s) => !s.ok).length - rejected.length,
          served: shots.filter((s) => s.ok).length,
          measured: shots.length ? rejected.length / shots.length : Number.NaN,
          atOffered: n <= capacity ? 0 : documentedRejection(n / room),
          atSampled: mean(expected),
          sampledLoad: mean(loads.map((l) => (l.inflight + l.queued) / (l.capacity + QUEUE))),
          rejectLoad: mean(rejected.flatMap((s) => (s.load === undefined ? [] : [s.load]))),
          rssMax: Math.max(0, ...mem.filter((m) => m.t >= from && m.t < to).map((m) => m.rss)),
          healthP99: {
            proxy: percentile(
              hs.filter((s) => s.who === 'proxy').map((s) => s.ms),
              99,
            ),
            api: percentile(
              hs.filter((s) => s.who === 'api').map((s) => s.ms),
              99,
            ),
          },
        };
        steps.push(step);
        ctx.log(
          `  ${n} clients: ${step.rejected}/${step.sent} rejected (${step.measured.toFixed(3)}), formula at offered load ${step.atOffered.toFixed(3)}, at sampled load ${step.atSampled.toFixed(3)}; served ${step.served}; RSS ${(step.rssMax / 2 ** 20).toFixed(0)} MiB; /health p99 proxy ${fmtMs(step.healthP99.proxy)}, api ${fmtMs(step.healthP99.api)}`,
        );
      }
      hwm = rss(pid)?.hwm ?? 0;
      if (!bed.serve.alive)
        f.violations.push(`serve exited (${bed.serve.exitCode ?? bed.serve.exitSignal})`);
    } finally {
      if (memTimer) clearInterval(memTimer);
      await clients.stop();
      await sampler?.stop();
      await bed.close();
    }
    // Invariants.
    const over = sampler!.samples.filter((s) => s.t >= loadFrom && s.t < loadTo);
    const p99 = (who: string) =>
      percentile(
        over.filter((s) => s.who === who).map((s) => s.ms),
        99,
      );
    const healthP99 = { proxy: p99('proxy'), api: p99('api') };
    const healthFailed = over.filter((s) => s.status !== 200).length;
    for (const who of ['proxy', 'api'] as const) {
      if (!(healthP99[who] < HEALTH_P99_MAX_MS))
        f.violations.push(
          `/health p99 on the ${who} port during the overload: ${fmtMs(healthP99[who])} (bound ${HEALTH_P99_MAX_MS} ms; idle in the same run ${fmtMs(idle[who])})`,
        );
    }
    if (healthFailed > 0)
      f.violations.push(`${healthFailed} /health samples during the overload did not answer 200`);
    for (const s of steps) {
      if (s.clients <= capacity && s.rejected > 0)
        f.violations.push(
          `${s.clients} clients fit in ${capacity} slots, yet ${s.rejected} requests were rejected`,
        );
    }
    const lowRejects = clients.shots.filter(
      (s) =>
        s.status === 503 && s.code === 'overloaded' && s.load !== undefined && s.load < THRESHOLD,
    ).length;
    if (lowRejects > 0)
      f.violations.push(`${lowRejects} rejections at a load below ${THRESHOLD} (x-flotilla-load)`);
    // Figures.
    const all = clients.shots.filter((s) => s.start >= loadFrom && s.start < loadTo);
    f.runs = 1;
    f.faultsInjected = steps.length;
    f.requestsSent = all.length;
    f.requestsFailed = all.filter((s) => !s.ok).length;
    f.windowSent = steps.reduce((a, s) => a + s.sent, 0);
    f.windowFailed = steps.reduce((a, s) => a + s.sent - s.served, 0);
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    const statuses: Record<string, number> = {};
    for (const s of all)
      if (!s.ok) {
        const k = `${s.status}${s.code ? ` ${s.code}` : ''}`;
        statuses[k] = (statuses[k] ?? 0) + 1;
      }
    f.notes.push(
      `load: closed-loop clients in steps ${stepsN.join(', ')} (${warmMs / 1000} s to settle, then ${measureMs / 1000} s measured per step), POST /${NAME}/v1/completions, again at once after an answer and 1 s after a failure; admission room ${room} (${capacity} slots + queue ${QUEUE}), queue_rejection_threshold 1 so the graduated formula alone decides up to a full queue`,
      `serve process (API, actors, prober and the proxy) RSS: idle ${mib(idle.rss)}, max over the overload ${mib(Math.max(0, ...steps.map((s) => s.rssMax)))}, peak (VmHWM) over the whole run ${mib(hwm)}`,
      `/health p99 during the overload (separate sampler process, fresh connection every 100 ms): proxy port ${fmtMs(healthP99.proxy)}, API port ${fmtMs(healthP99.api)}; idle in the same run ${fmtMs(idle.proxy)} / ${fmtMs(idle.api)}; bound ${HEALTH_P99_MAX_MS} ms`,
      `failures by status and code: ${JSON.stringify(statuses)} ("requests failed" counts the 503 overloaded rejections)`,
      `time to recover = clients stopped → the proxy's /health load is healthy with nothing in flight or queued`,
      'formula at offered load: (clients/room − 0.7)/0.3 clamped to [0, 1], 0 while the clients fit in the slots; formula at sampled load: the same evaluated on each /health sample of the proxy (in flight + queued over slots + queue; 0 when a slot is free and the queue empty), averaged over the step — what an arriving request meets, since a client backing off after a 503 is not in the room',
    );
    const fx = (v: number) => (Number.isNaN(v) ? '–' : v.toFixed(3));
    f.tables = [
      `Rejection curve (the machine's load is in the run line above; chart: [reliability-overload.svg](reliability-overload.svg)):`,
      '',
      '| clients | offered load | sent | rejected 503 | other failures | measured share | formula at offered load | formula at sampled load | sampled load | load at rejection | served/s (by start) | RSS max | /health p99 proxy / API |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      ...steps.map(
        (s) =>
          `| ${s.clients} | ${(s.clients / room).toFixed(3)} | ${s.sent} | ${s.rejected} | ${s.otherFailed} | ${fx(s.measured)} | ${fx(s.atOffered)} | ${fx(s.atSampled)} | ${fx(s.sampledLoad)} | ${fx(s.rejectLoad)} | ${(s.served / ((s.to - s.from) / 1000)).toFixed(1)} | ${mib(s.rssMax)} | ${fmtMs(s.healthP99.proxy)} / ${fmtMs(s.healthP99.api)} |`,
      ),
    ];
    if (steps.length > 1)
      f.files = {
        'reliability-overload.svg': chart(
          steps,
          `Overload: rejected share vs clients (room ${room}, ${ctx.quick ? 'quick' : 'full'} mode, seed ${ctx.seed})`,
        ),
      };
    f.durationMs = performance.now() - t0;
    return [f];
  },
};
