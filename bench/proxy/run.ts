/**
 * Proxy benchmark (not a test): `npm run bench:proxy`.
 *
 * In one run, against a fixed-response backend with two replicas (separate processes):
 * direct to one replica; nginx (worker_processes 1, round robin, keep-alive upstreams, no
 * buffering: configured like Flotilla's proxy); the bare reference (bare-proxy.mjs: node:http
 * + undici that only forwards, to tell what Flotilla's logic costs from what the stack costs);
 * Flotilla's own proxy with 1 worker and with BENCH_PROXY_WORKERS (default 2) workers; and the
 * HAProxy data plane (src/data-plane/haproxy, one thread). Each is driven by wrk at 16 and 64
 * connections: throughput, p50/p99 and their excess over direct, CPU per request (utime+stime
 * from /proc of the target's process tree: proxy workers, HAProxy master+worker and its
 * manager, nginx master+worker), then SSE time to first byte. Prints the ratios own/bare,
 * own/nginx and haproxy/nginx. Rounds interleave the targets; medians are reported.
 *
 * nginx against HAProxy, on equal terms: one core each (worker_processes 1 / nbthread 1),
 * keep-alive upstreams, no access log, no health checks, round robin, retries on 502/503, and
 * no concurrency limit the bench reaches (the table's admission gives each HAProxy server
 * maxconn 256 and a queue of 1024 for at most 64 connections: HAProxy never queues, nginx has
 * no limit). HAProxy does the contract's work on top (x-flotilla-replica, hop-by-hop headers,
 * prefix strip); its CPU includes its manager process (README "Proxy performance").
 *
 * Everything it starts it stops, also on failure or Ctrl-C.
 * Env: BENCH_SECONDS (default 3), BENCH_WARMUP_SECONDS (1), BENCH_TTFB_SAMPLES (200),
 * BENCH_ROUNDS (3), BENCH_PROXY_WORKERS (2; 1 skips the multi-worker target), BENCH_OWN (`dist`:
 * the own proxy from compiled dist/, run `npm run build` first; default: the sources via tsx).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../test/harness/services.ts';
import {
  benchTable,
  children,
  here,
  ownProxy,
  startBackends,
  startListening,
  stopChildren,
  TICK_US,
  treeCpuTicks,
  type WrkRun,
  wrk,
} from './measure.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const WARMUP = Number(process.env.BENCH_WARMUP_SECONDS ?? 1);
const TTFB_SAMPLES = Number(process.env.BENCH_TTFB_SAMPLES ?? 200);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const WORKERS = Math.max(1, Number(process.env.BENCH_PROXY_WORKERS ?? 2));
const NGINX = '/usr/sbin/nginx';

let tmp: string | undefined;

function cleanup(): void {
  stopChildren();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  tmp = undefined;
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

async function waitForHttp(url: string, what: string): Promise<void> {
  const until = Date.now() + 15_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = request(url, { agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode === 200));
      });
      req.on('error', () => resolve(false));
      req.end();
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`${what} did not answer at ${url}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startNginx(backendPorts: number[]): Promise<{ port: number; pid: number }> {
  tmp = mkdtempSync(join(tmpdir(), 'flotilla-bench-nginx-'));
  const port = await freePort();
  const conf = `
worker_processes 1;
pid ${tmp}/nginx.pid;
error_log ${tmp}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${tmp}/body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
  upstream backend {
${backendPorts.map((p) => `    server 127.0.0.1:${p};`).join('\n')}
    keepalive 128;
  }
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 1000000;
    location /m/ {
      proxy_pass http://backend/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_buffering off;
      proxy_next_upstream error timeout http_502 http_503;
    }
  }
}
`;
  writeFileSync(join(tmp, 'nginx.conf'), conf);
  const proc = spawn(
    NGINX,
    ['-p', tmp, '-e', join(tmp, 'error.log'), '-c', join(tmp, 'nginx.conf'), '-g', 'daemon off;'],
    {
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  children.push(proc);
  await waitForHttp(`http://127.0.0.1:${port}/m/x`, 'nginx');
  return { port, pid: proc.pid ?? 0 };
}

interface WrkResult extends Omit<WrkRun, 'out'> {
  /** CPU time of the target's processes per request, microseconds (NaN when not measured). */
  cpuUs: number;
}

/** Time to the first body chunk of an SSE response, over one keep-alive connection. */
async function sseTtfb(url: string, samples: number): Promise<number[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const times: number[] = [];
  try {
    for (let i = 0; i < samples + 20; i++) {
      const ms = await new Promise<number>((resolve, reject) => {
        const t0 = performance.now();
        let first = -1;
        const req = request(url, { agent }, (res) => {
          res.on('data', () => {
            if (first < 0) first = performance.now() - t0;
          });
          res.on('end', () => resolve(first));
        });
        req.on('error', reject);
        req.end();
      });
      if (i >= 20) times.push(ms); // the first 20 warm up connections and JIT
    }
  } finally {
    agent.destroy();
  }
  return times.sort((a, b) => a - b);
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
const f = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');

/** A signed difference in ms. */
const sgn = (n: number) => `${n >= 0 ? '+' : ''}${f(n, 3)}`;

async function main(): Promise<void> {
  const backendPorts = await startBackends();
  const table = benchTable(backendPorts);
  // BENCH_OWN=dist: the own proxy from compiled dist/ (`npm run build`), as `serve` runs it.
  const ownProc = ownProxy(process.env.BENCH_OWN === 'dist' ? 'dist' : 'src');
  const own = await startListening('own proxy', ownProc.args, {
    ...ownProc.env,
    BENCH_TABLE: JSON.stringify(table),
  });
  const ownN =
    WORKERS > 1
      ? await startListening(`own proxy ×${WORKERS}`, ownProc.args, {
          ...ownProc.env,
          BENCH_TABLE: JSON.stringify(table),
          PROXY_WORKERS: String(WORKERS),
        })
      : null;
  const bare = await startListening('bare node:http+undici proxy', [here('./bare-proxy.mjs')], {
    UPSTREAMS: backendPorts.map((b) => `http://127.0.0.1:${b.port}`).join(','),
  });
  const haproxy = await startListening(
    'haproxy data plane',
    ['--import', 'tsx', here('./haproxy-process.ts')],
    { BENCH_TABLE: JSON.stringify(table) },
  );
  const nginx = await startNginx(backendPorts.map((b) => b.port));

  const targets: Record<string, { url: string; pid: number }> = {
    direct: { url: `http://127.0.0.1:${backendPorts[0]!.port}/x`, pid: backendPorts[0]!.pid },
    nginx: { url: `http://127.0.0.1:${nginx.port}/m/x`, pid: nginx.pid },
    bare: { url: `http://127.0.0.1:${bare.port}/m/x`, pid: bare.pid },
    own: { url: `http://127.0.0.1:${own.port}/m/x`, pid: own.pid },
    ...(ownN
      ? { [`own×${WORKERS}`]: { url: `http://127.0.0.1:${ownN.port}/m/x`, pid: ownN.pid } }
      : {}),
    haproxy: { url: `http://127.0.0.1:${haproxy.port}/m/x`, pid: haproxy.pid },
  };
  for (const [name, t] of Object.entries(targets)) await waitForHttp(t.url, name);

  console.log(
    `bench/proxy: ${cpus().length} cores shared by wrk, the proxies, 2 backends${process.env.BENCH_NOTE ? ` (${process.env.BENCH_NOTE})` : ''}; node ${process.version}; ${SECONDS}s per run after ${WARMUP}s warm-up, ${ROUNDS} round(s), medians; wrk -t1. Short runs: a shared machine.`,
  );
  const names = Object.keys(targets);
  const results: Record<string, Record<number, WrkResult>> = Object.fromEntries(
    names.map((n) => [n, {}]),
  );
  for (const connections of [16, 64]) {
    const rounds: Record<string, WrkResult[]> = {};
    // Rounds interleave the targets, so background noise on a shared machine hits them alike.
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, t] of Object.entries(targets)) {
        if (WARMUP > 0) await wrk(t.url, connections, WARMUP, { latency: true });
        const before = treeCpuTicks(t.pid);
        const { out: _, ...run } = await wrk(t.url, connections, SECONDS, { latency: true });
        // The direct target's process is the backend itself: its CPU is not a proxy's.
        const r: WrkResult = {
          ...run,
          cpuUs:
            name === 'direct'
              ? Number.NaN
              : ((treeCpuTicks(t.pid) - before) * TICK_US) / run.requests,
        };
        const list = rounds[name] ?? [];
        list.push(r);
        rounds[name] = list;
      }
    }
    const median = (xs: number[]) => {
      const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
      return s.length ? s[Math.floor(s.length / 2)]! : Number.NaN;
    };
    for (const name of names) {
      const rs = rounds[name]!;
      const r: WrkResult = {
        rps: median(rs.map((x) => x.rps)),
        requests: median(rs.map((x) => x.requests)),
        cpuUs: median(rs.map((x) => x.cpuUs)),
        p50: median(rs.map((x) => x.p50)),
        p99: median(rs.map((x) => x.p99)),
        errors: rs
          .map((x) => x.errors)
          .filter(Boolean)
          .join(' | '),
      };
      results[name]![connections] = r;
      const d = results.direct![connections];
      const added =
        d && name !== 'direct'
          ? `  added p50 ${sgn(r.p50 - d.p50)} p99 ${sgn(r.p99 - d.p99)} ms`
          : '';
      console.log(
        `  ${name.padEnd(8)} c=${String(connections).padEnd(3)} ${f(r.rps, 0).padStart(7)} req/s  p50 ${f(r.p50, 3)} p99 ${f(r.p99, 3)} ms${added}  cpu ${f(r.cpuUs, 1)} µs/req${r.errors ? `  (${r.errors})` : ''}  [rounds ${rs.map((x) => f(x.rps, 0)).join(', ')}]`,
      );
    }
  }

  console.log(
    `\nSSE time to first byte (${TTFB_SAMPLES} sequential requests, one keep-alive connection)`,
  );
  const ttfb: Record<string, number[]> = {};
  for (const [name, t] of Object.entries(targets)) {
    ttfb[name] = await sseTtfb(t.url.replace(/\/x$/, '/sse'), TTFB_SAMPLES);
    const v = ttfb[name]!;
    const d = ttfb.direct!;
    const added =
      name === 'direct'
        ? ''
        : `  added p50 ${sgn(pct(v, 50) - pct(d, 50))} p99 ${sgn(pct(v, 99) - pct(d, 99))} ms`;
    console.log(
      `  ${name.padEnd(8)} p50 ${f(pct(v, 50), 3)} ms  p99 ${f(pct(v, 99), 3)} ms${added}`,
    );
  }

  console.log('\nratios (throughput; CPU per request)');
  const ratio = (a: string, b: string, c: number) => {
    const x = results[a]?.[c];
    const y = results[b]?.[c];
    if (!x || !y) return '';
    return `${a}/${b} ${f(x.rps / y.rps)}x; cpu ${f(x.cpuUs / y.cpuUs)}x`;
  };
  for (const c of [16, 64]) {
    const pairs: [string, string][] = [
      ['own', 'bare'],
      ['own', 'nginx'],
      ['haproxy', 'nginx'],
      ['bare', 'nginx'],
      ...(ownN
        ? ([
            [`own×${WORKERS}`, 'own'],
            [`own×${WORKERS}`, 'nginx'],
          ] as [string, string][])
        : []),
    ];
    console.log(`  c=${c}: ${pairs.map(([a, b]) => ratio(a, b, c)).join(' | ')}`);
  }
  const verdict = [16, 64].map((c) => {
    const o = results.own![c]!;
    const h = results.haproxy![c]!;
    return `c=${c}: own ${f(o.rps / results.bare![c]!.rps)}x bare (aim ≥ 1.0), haproxy ${f(h.rps / results.nginx![c]!.rps)}x nginx (aim ≥ 0.9)`;
  });
  console.log(`\nsummary: ${verdict.join('; ')}`);
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(cleanup);
