/**
 * CPU profile of Flotilla's own proxy under wrk (not a test): `npx tsx bench/proxy/profile.ts`.
 * Starts two fixed-response backends and the proxy with `--cpu-prof`, drives it with wrk
 * (PROFILE_CONNECTIONS, default 16; PROFILE_WARMUP_SECONDS, default 3, then PROFILE_SECONDS,
 * default 8, measured), stops it, and prints the functions and files with the most self time
 * in the measured window, as CPU µs per request: the process's utime+stime from /proc (load-
 * independent) shared out by the profile's non-idle samples. The .cpuprofile is kept (its
 * path is printed) for a flame graph in Chrome DevTools or speedscope. PROFILE_TARGET=bare
 * profiles the bare node:http+undici reference (bare-proxy.mjs) instead; PROFILE_TARGET=both
 * profiles both and prints what the own proxy adds, by file or module.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CONNECTIONS = Number(process.env.PROFILE_CONNECTIONS ?? 16);
const SECONDS = Number(process.env.PROFILE_SECONDS ?? 8);
const WARMUP = Number(process.env.PROFILE_WARMUP_SECONDS ?? 3);
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

function start(
  args: string[],
  env: Record<string, string>,
): Promise<{ port: number; proc: ChildProcess }> {
  const proc = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(proc);
  return new Promise((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /LISTENING (\d+)/.exec(buf);
      if (m) resolve({ port: Number(m[1]), proc });
    });
    proc.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}`)));
  });
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
}

/** utime+stime of a process, microseconds. */
function cpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

function wrk(url: string, seconds: number): Promise<number> {
  const proc = spawn('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, url], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  return new Promise((resolve) =>
    proc.once('exit', () => {
      console.log(`  ${/Requests\/sec:.*/.exec(out)?.[0] ?? out}`);
      resolve(Number(/(\d+) requests in/.exec(out)?.[1]));
    }),
  );
}

/** Self time per function and per file, in CPU µs per request, over the measured window. */
interface Breakdown {
  requests: number;
  cpuUsPerReq: number;
  byFn: Map<string, number>;
  byFile: Map<string, number>;
  file: string;
}

async function profileOne(
  target: 'own' | 'bare',
  backends: { port: number }[],
  table: unknown,
): Promise<Breakdown> {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-proxy-prof-'));
  const proxy =
    target === 'bare'
      ? await start(['--cpu-prof', `--cpu-prof-dir=${dir}`, here('./bare-proxy.mjs')], {
          UPSTREAMS: backends.map((b) => `http://127.0.0.1:${b.port}`).join(','),
        })
      : await start(
          ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--import', 'tsx', here('./proxy-process.ts')],
          { BENCH_TABLE: JSON.stringify(table) },
        );
  const url = `http://127.0.0.1:${proxy.port}/m/x`;
  console.log(
    `${target}: warm-up ${WARMUP}s, then ${SECONDS}s measured, ${CONNECTIONS} connections`,
  );
  if (WARMUP > 0) await wrk(url, WARMUP);
  const pid = proxy.proc.pid!;
  const cpu0 = cpuUs(pid);
  // Same clock as the profile's timestamps (CLOCK_MONOTONIC, µs).
  const t0 = Number(process.hrtime.bigint() / 1000n);
  const requests = await wrk(url, SECONDS);
  const t1 = Number(process.hrtime.bigint() / 1000n);
  const cpu = cpuUs(pid) - cpu0;
  const exited = new Promise((r) => proxy.proc.once('exit', r));
  proxy.proc.kill('SIGTERM');
  await exited;
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile in ${dir}`);
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // Non-idle samples in the window, by node.
  const hits = new Map<number, number>();
  let t = profile.startTime;
  let busy = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]!;
    if (t < t0 || t > t1) continue;
    const node = byId.get(profile.samples[i]!)!;
    if (node.callFrame.functionName === '(idle)') continue;
    hits.set(node.id, (hits.get(node.id) ?? 0) + 1);
    busy++;
  }
  // The process's CPU time (from /proc: load-independent) shared out by sample counts.
  const perHit = cpu / Math.max(1, busy) / Math.max(1, requests);
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  for (const [id, n] of hits) {
    const f = byId.get(id)!.callFrame;
    const where = f.url
      .replace(/^file:\/\//, '')
      .replace(/^.*\/node_modules\//, 'node_modules/')
      .replace(process.cwd(), '.');
    const key = `${f.functionName || '(anonymous)'}  ${where}:${f.lineNumber + 1}`;
    byFn.set(key, (byFn.get(key) ?? 0) + n * perHit);
    const group =
      where === ''
        ? f.functionName
        : where.startsWith('node:')
          ? where
          : where.replace(/^(node_modules\/[^/]+).*/, '$1');
    byFile.set(group, (byFile.get(group) ?? 0) + n * perHit);
  }
  return { requests, cpuUsPerReq: cpu / requests, byFn, byFile, file: join(dir, file) };
}

const top = (m: Map<string, number>, n: number, total: number) =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(
      ([k, v]) =>
        `  ${v.toFixed(2).padStart(6)} µs/req ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`,
    )
    .join('\n');

async function main(): Promise<void> {
  const backends = await Promise.all(
    ['r1', 'r2'].map((id) => start([here('./backend.mjs')], { REPLICA_ID: id, PORT: '0' })),
  );
  const table = {
    version: 1,
    endpoints: [],
    deployments: [
      {
        deploymentId: 'bench',
        name: 'm',
        routing: { strategy: 'round_robin', request_timeout_s: 60, retries: 2 },
        routes: backends.map((b, i) => ({
          routeId: `route-r${i + 1}`,
          replicaId: `r${i + 1}`,
          url: `http://127.0.0.1:${b.port}`,
          state: 'HEALTHY',
          weight: 1,
        })),
        admission: { max_concurrent_requests: 256, max_queue_size: 1024 },
      },
    ],
  };
  const which = (process.env.PROFILE_TARGET ?? 'own') as 'own' | 'bare' | 'both';
  const results: Partial<Record<'own' | 'bare', Breakdown>> = {};
  for (const target of which === 'both' ? (['bare', 'own'] as const) : [which]) {
    const r = await profileOne(target, backends, table);
    results[target] = r;
    console.log(
      `\n${target}: ${r.cpuUsPerReq.toFixed(1)} CPU µs/request (/proc utime+stime over ${r.requests} requests), self time by function:\n${top(r.byFn, 30, r.cpuUsPerReq)}`,
    );
    console.log(`\n${target}: self time by file or module:\n${top(r.byFile, 15, r.cpuUsPerReq)}`);
    console.log(`\nprofile: ${r.file}\n`);
  }
  const { own, bare } = results;
  if (own && bare) {
    const diff = new Map<string, number>();
    for (const k of new Set([...own.byFile.keys(), ...bare.byFile.keys()]))
      diff.set(k, (own.byFile.get(k) ?? 0) - (bare.byFile.get(k) ?? 0));
    console.log(
      `own − bare: ${(own.cpuUsPerReq - bare.cpuUsPerReq).toFixed(1)} µs/request (own ${own.cpuUsPerReq.toFixed(1)}, bare ${bare.cpuUsPerReq.toFixed(1)}); by file or module, largest first:`,
    );
    console.log(
      [...diff]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 15)
        .map(([k, v]) => `  ${(v >= 0 ? '+' : '') + v.toFixed(2)} µs/req  ${k}`)
        .join('\n'),
    );
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
