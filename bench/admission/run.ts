/**
 * Admission benchmark (not a test): `npm run bench:admission`.
 *
 * In one run, against echo-server replicas (separate processes) through Flotilla's proxy
 * (in this process, as `serve` runs it):
 *
 * A. A replica that degrades past a concurrency level (`--slow-above 16`: past 16 replies at
 *    once every token takes (n/16)² longer), driven by CLIENTS closed-loop clients sending
 *    streaming chat completions for BENCH_SECONDS, under each admission policy:
 *      small     the old default for everyone (3 per replica, queue 50: the guide's small profile)
 *      cmd       the per-variant default of an unknown server (8 per replica)
 *      vllm      the per-variant default of `vllm serve` (256 per replica, --max-num-seqs)
 *      adaptive  admission.mode adaptive with vLLM's ceiling (starts at 256, follows latency)
 *    Prints completed streams/s, 503s, first-byte (first SSE event) p50/p99 and ratios to small.
 * B. The case: 64 concurrent streaming chat completions at once to one replica
 *    (no slowdown), direct vs through the proxy under each policy: first-byte p50/p99, 503s.
 *
 * Env: BENCH_SECONDS (default 8), BENCH_CLIENTS (64), BENCH_TOKEN_MS (20), BENCH_TOKENS (20).
 * Everything it starts it stops, also on failure.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import type { DeploymentRoutes } from '../../src/domain/routing.ts';
import { createProxy, type FlotillaProxy } from '../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../src/proxy/routing-table-source.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 64);
const TOKEN_MS = Number(process.env.BENCH_TOKEN_MS ?? 20);
const TOKENS = Number(process.env.BENCH_TOKENS ?? 20);
const SLOW_ABOVE = 16;
const BIN = fileURLToPath(new URL('../../bin/flotilla.js', import.meta.url));

const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

function startEcho(args: string[]): Promise<string> {
  const proc = spawn(process.execPath, [BIN, 'echo-server', '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(proc);
  return new Promise((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /listening on (http:\/\/[^\s"]+)/.exec(buf);
      if (m) resolve(m[1]!.replace(/\/$/, ''));
    });
    proc.once('exit', (code) => reject(new Error(`echo-server exited ${code}`)));
  });
}

interface Policy {
  name: string;
  admission?: Record<string, unknown>;
  replica_concurrency?: DeploymentRoutes['replica_concurrency'];
}
const VLLM = { max_concurrent_requests: 256, max_limit: 256, source: 'default' };
const CMD = { max_concurrent_requests: 8, max_limit: 128, source: 'conservative' };
const POLICIES: Policy[] = [
  { name: 'small', admission: { profile: 'small' }, replica_concurrency: CMD },
  { name: 'cmd', replica_concurrency: CMD },
  { name: 'vllm', replica_concurrency: VLLM },
  { name: 'adaptive', admission: { mode: 'adaptive' }, replica_concurrency: VLLM },
];

function dep(p: Policy, url: string, routeId: string): DeploymentRoutes {
  return {
    deploymentId: `dep-${p.name}`,
    name: p.name,
    routing: { strategy: 'round_robin', request_timeout_s: 120, retries: 0 },
    routes: [{ routeId, replicaId: routeId, url, state: 'HEALTHY', weight: 1 }],
    ...(p.admission ? { admission: p.admission } : {}),
    ...(p.replica_concurrency ? { replica_concurrency: p.replica_concurrency } : {}),
  } as DeploymentRoutes;
}

const agent = new Agent({ connections: 1024, keepAliveTimeout: 30_000 });
const BODY = JSON.stringify({
  model: 'echo',
  stream: true,
  messages: [
    { role: 'user', content: Array.from({ length: TOKENS }, (_, i) => `t${i}`).join(' ') },
  ],
});

/** One streaming completion: status, ms to the first body byte, ms to the end. */
async function stream(base: string): Promise<{ status: number; firstMs: number; totalMs: number }> {
  const t0 = performance.now();
  const r = await request(`${base}/v1/chat/completions`, {
    dispatcher: agent,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: BODY,
  });
  let firstMs = -1;
  for await (const _ of r.body) if (firstMs < 0) firstMs = performance.now() - t0;
  return { status: r.statusCode, firstMs, totalMs: performance.now() - t0 };
}

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '-');

interface Result {
  name: string;
  ok: number;
  rejected: number;
  perS: number;
  p50: number;
  p99: number;
  capacity?: number;
}

async function closedLoop(base: string, name: string, proxy?: FlotillaProxy): Promise<Result> {
  const first: number[] = [];
  let ok = 0;
  let rejected = 0;
  const end = performance.now() + SECONDS * 1000;
  const caps: number[] = [];
  const sampler = proxy
    ? setInterval(() => caps.push(proxy.status(name).capacity), 100)
    : undefined;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (performance.now() < end) {
        const r = await stream(base);
        if (r.status === 200) {
          ok++;
          first.push(r.firstMs);
        } else {
          rejected++;
          await new Promise((res) => setTimeout(res, 50));
        }
      }
    }),
  );
  if (sampler) clearInterval(sampler);
  return {
    name,
    ok,
    rejected,
    perS: ok / SECONDS,
    p50: pct(first, 50),
    p99: pct(first, 99),
    ...(caps.length ? { capacity: pct(caps, 50) } : {}),
  };
}

async function burst(base: string, name: string): Promise<Result> {
  const t0 = performance.now();
  const all = await Promise.all(Array.from({ length: 64 }, () => stream(base)));
  const ms = performance.now() - t0;
  const ok = all.filter((r) => r.status === 200);
  const first = ok.map((r) => r.firstMs);
  return {
    name,
    ok: ok.length,
    rejected: all.length - ok.length,
    perS: ok.length / (ms / 1000),
    p50: pct(first, 50),
    p99: pct(first, 99),
  };
}

function print(title: string, rows: Result[], base: Result): void {
  console.log(`\n${title}`);
  console.log(
    'policy      streams/s  ×base   503s   first-byte p50 ms  p99 ms  ×base(p99)  capacity(median)',
  );
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(10)}  ${f(r.perS, 1).padStart(9)}  ${f(r.perS / base.perS, 2).padStart(5)}  ${String(r.rejected).padStart(5)}  ${f(r.p50).padStart(17)}  ${f(r.p99).padStart(6)}  ${f(r.p99 / base.p99, 2).padStart(10)}  ${r.capacity ?? ''}`,
    );
  }
}

async function main(): Promise<void> {
  console.log(
    `admission bench: ${CLIENTS} closed-loop clients, ${SECONDS} s per policy, ${TOKENS} tokens × ${TOKEN_MS} ms, slow above ${SLOW_ABOVE}`,
  );
  // A: one degrading replica per policy (fresh, so no policy inherits another's backlog).
  const rowsA: Result[] = [];
  for (const p of POLICIES) {
    const url = await startEcho([
      '--token-latency-ms',
      String(TOKEN_MS),
      '--slow-above',
      String(SLOW_ABOVE),
    ]);
    const source = createStaticTableSource({
      version: 1,
      deployments: [dep(p, url, `r-${p.name}`)],
      endpoints: [],
    });
    const proxy = await createProxy({ source });
    try {
      await stream(`${proxy.url}/${p.name}`);
      rowsA.push(await closedLoop(`${proxy.url}/${p.name}`, p.name, proxy));
    } finally {
      await proxy.close();
      children.pop()?.kill('SIGKILL');
    }
  }
  print(
    `A. replica slowing past ${SLOW_ABOVE} at once, ${CLIENTS} clients (ratios to small = old 3/50):`,
    rowsA,
    rowsA[0]!,
  );

  // B: the case, 64 streams at once to one replica that takes them all.
  const url = await startEcho(['--token-latency-ms', String(TOKEN_MS)]);
  const source = createStaticTableSource({
    version: 1,
    deployments: POLICIES.map((p) => dep(p, url, `b-${p.name}`)),
    endpoints: [],
  });
  const proxy = await createProxy({ source });
  try {
    await stream(url);
    const rowsB: Result[] = [await burst(url, 'direct')];
    for (const p of POLICIES) rowsB.push(await burst(`${proxy.url}/${p.name}`, p.name));
    print('B. 64 concurrent streams at once to one replica (ratios to direct):', rowsB, rowsB[0]!);
  } finally {
    await proxy.close();
  }
  await agent.close();
  for (const c of children) c.kill('SIGKILL');
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
