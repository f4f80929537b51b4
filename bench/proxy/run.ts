/**
 * Proxy benchmark (not a test): `npx tsx bench/proxy/run.ts`.
 *
 * In one run: a fixed-response backend with two replicas (separate processes), Flotilla's proxy
 * (its own process), a bare node:http+undici proxy (bare-proxy.mjs: the same stack with no
 * logic, to separate what Flotilla's logic costs from what the stack costs) and nginx (worker_processes 1, round robin, keep-alive upstreams, no
 * buffering: configured like Flotilla's proxy), each driven by wrk at 16 and 64 connections:
 * direct to one replica, through Flotilla, through nginx. Then server-sent-event time to first
 * byte, direct vs through each proxy. Prints req/s, p50, p99 and the ratios.
 * Aim: Flotilla ≥ 0.8× nginx's throughput and < 1 ms added p50 at 16 connections.
 *
 * Everything it starts it stops, also on failure or Ctrl-C.
 * Env: BENCH_SECONDS (default 5), BENCH_WARMUP_SECONDS (1), BENCH_TTFB_SAMPLES (300),
 * BENCH_ROUNDS (1; more rounds interleave the targets and report the median).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../test/harness/services.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const WARMUP = Number(process.env.BENCH_WARMUP_SECONDS ?? 1);
const TTFB_SAMPLES = Number(process.env.BENCH_TTFB_SAMPLES ?? 300);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 1));
const NGINX = '/usr/sbin/nginx';
const WRK = '/usr/bin/wrk';
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

const children: ChildProcess[] = [];
let tmp: string | undefined;

function cleanup(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  }
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

/** Spawns a process and waits for `LISTENING <port>` on its stdout. */
function startListening(
  name: string,
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
) {
  const proc = spawn(cmd, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(proc);
  return new Promise<number>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /LISTENING (\d+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code})`));
    });
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

async function startNginx(backendPorts: number[]): Promise<number> {
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
  return port;
}

interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  errors: string;
}

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

function wrk(url: string, connections: number, seconds: number): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(WRK, ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', url], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(proc);
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    proc.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited ${code}: ${out}`));
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
      const p50 = toMs(/\s50%\s+(\S+)/.exec(out)?.[1] ?? '');
      const p99 = toMs(/\s99%\s+(\S+)/.exec(out)?.[1] ?? '');
      const errors = [
        /Non-2xx or 3xx responses: \d+/.exec(out)?.[0],
        /Socket errors: .*/.exec(out)?.[0],
      ]
        .filter(Boolean)
        .join('; ');
      resolve({ rps, p50, p99, errors });
    });
  });
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

async function main(): Promise<void> {
  const backendPorts = await Promise.all(
    ['r1', 'r2'].map((id) =>
      startListening(`backend ${id}`, process.execPath, [here('./backend.mjs')], {
        REPLICA_ID: id,
        PORT: '0',
      }),
    ),
  );
  const table = {
    version: 1,
    deployments: [
      {
        deploymentId: 'bench',
        name: 'm',
        routing: { strategy: 'round_robin', request_timeout_s: 60, retries: 2 },
        routes: backendPorts.map((p, i) => ({
          routeId: `route-r${i + 1}`,
          replicaId: `r${i + 1}`,
          url: `http://127.0.0.1:${p}`,
          state: 'HEALTHY',
          weight: 1,
        })),
        // Admission is not under test: room for every wrk connection, like nginx has.
        admission: { max_concurrent_requests: 256, max_queue_size: 1024 },
      },
    ],
    endpoints: [],
  };
  const proxyPort = await startListening(
    'flotilla proxy',
    process.execPath,
    ['--import', 'tsx', here('./proxy-process.ts')],
    {
      BENCH_TABLE: JSON.stringify(table),
    },
  );
  const barePort = await startListening(
    'bare node:http+undici proxy',
    process.execPath,
    [here('./bare-proxy.mjs')],
    {
      UPSTREAMS: backendPorts.map((p) => `http://127.0.0.1:${p}`).join(','),
    },
  );
  const nginxPort = await startNginx(backendPorts);

  const targets = {
    direct: `http://127.0.0.1:${backendPorts[0]}/x`,
    flotilla: `http://127.0.0.1:${proxyPort}/m/x`,
    bare: `http://127.0.0.1:${barePort}/m/x`,
    nginx: `http://127.0.0.1:${nginxPort}/m/x`,
  };
  await waitForHttp(targets.flotilla, 'flotilla proxy');

  console.log(
    `bench/proxy: ${cpus().length} cores (shared by wrk, proxy, 2 backends), node ${process.version}, ${SECONDS}s per run after ${WARMUP}s warm-up, ${ROUNDS} round(s), wrk -t1`,
  );
  const results: Record<string, Record<number, WrkResult>> = {
    direct: {},
    flotilla: {},
    bare: {},
    nginx: {},
  };
  for (const connections of [16, 64]) {
    const rounds: Record<string, WrkResult[]> = {};
    // Rounds interleave the targets, so background noise on a shared machine hits them alike;
    // the round with the median throughput is reported.
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, url] of Object.entries(targets)) {
        if (WARMUP > 0) await wrk(url, connections, WARMUP);
        const r = await wrk(url, connections, SECONDS);
        if (rounds[name]) rounds[name].push(r);
        else rounds[name] = [r];
      }
    }
    for (const name of Object.keys(targets)) {
      const sorted = rounds[name]!.sort((a, b) => a.rps - b.rps);
      const r = sorted[Math.floor(sorted.length / 2)]!;
      results[name]![connections] = r;
      const spread =
        sorted.length > 1 ? `  [rounds ${sorted.map((x) => f(x.rps, 0)).join(', ')}]` : '';
      console.log(
        `  ${name.padEnd(8)} c=${String(connections).padEnd(3)} ${f(r.rps, 0).padStart(8)} req/s  p50 ${f(r.p50, 3)} ms  p99 ${f(r.p99, 3)} ms${r.errors ? `  (${r.errors})` : ''}${spread}`,
      );
    }
  }

  console.log('\nratios');
  for (const connections of [16, 64]) {
    const d = results.direct![connections]!;
    const p = results.flotilla![connections]!;
    const n = results.nginx![connections]!;
    const b = results.bare![connections]!;
    console.log(
      `  c=${connections}: flotilla/nginx throughput ${f(p.rps / n.rps)}x, flotilla/direct ${f(p.rps / d.rps)}x, nginx/direct ${f(n.rps / d.rps)}x; ` +
        `added p50 vs direct: flotilla +${f(p.p50 - d.p50, 3)} ms, nginx +${f(n.p50 - d.p50, 3)} ms; flotilla−nginx p50 ${f(p.p50 - n.p50, 3)} ms`,
    );
    console.log(
      `        stack ceiling: bare node:http+undici/nginx ${f(b.rps / n.rps)}x; flotilla/bare ${f(p.rps / b.rps)}x (the cost of Flotilla's own logic)`,
    );
  }

  console.log(
    `\nSSE time to first byte (${TTFB_SAMPLES} sequential requests, one keep-alive connection)`,
  );
  const ttfb: Record<string, number[]> = {};
  for (const [name, url] of Object.entries(targets)) {
    if (name === 'bare') continue;
    ttfb[name] = await sseTtfb(url.replace(/\/x$/, '/sse'), TTFB_SAMPLES);
    const t = ttfb[name]!;
    console.log(`  ${name.padEnd(8)} p50 ${f(pct(t, 50), 3)} ms  p99 ${f(pct(t, 99), 3)} ms`);
  }
  const d50 = pct(ttfb.direct!, 50);
  console.log(
    `  added p50: flotilla +${f(pct(ttfb.flotilla!, 50) - d50, 3)} ms, nginx +${f(pct(ttfb.nginx!, 50) - d50, 3)} ms`,
  );

  const c16 = results.flotilla![16]!;
  const verdict = [
    `throughput c=16 ${f(c16.rps / results.nginx![16]!.rps)}x nginx (aim ≥ 0.80)`,
    `c=64 ${f(results.flotilla![64]!.rps / results.nginx![64]!.rps)}x nginx`,
    `added p50 at c=16 ${f(c16.p50 - results.direct![16]!.p50, 3)} ms (aim < 1)`,
  ];
  console.log(`\nsummary: ${verdict.join('; ')}`);
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(cleanup);
